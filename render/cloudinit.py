"""k3s server cloud-init, built as data and rendered to YAML (pure; no Pulumi resources).

The same `ApiEndpoint` model feeds the k3s flags (`--tls-san`, `--advertise-address`) and
Cilium's `k8sServiceHost`/`k8sServicePort`, so the two can never disagree.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any, Final

import yaml

from config.models import StackConfig
from render.naming import NODE_ROLE_LABEL_KEY, REGION_LABEL_KEY, region_label

# Hetzner refuses user_data above 32 KiB when the server is created.
USER_DATA_CAP: Final = 32_768
K3S_TOKEN_LENGTH: Final = 64
K3S_INSTALL_URL: Final = "https://get.k3s.io"
API_PORT: Final = 6443
# k3s runs a node-local API load balancer on every node (agents and servers) at this port;
# it follows the live set of servers, so it stays correct when one CP of three is down.
LOCAL_LB_HOST: Final = "127.0.0.1"
LOCAL_LB_PORT: Final = 6444
# Worst-case placeholders for the size check at preview, before Hetzner has assigned addresses.
WORST_CASE_IPV4: Final = "255.255.255.255"

K3S_CONFIG_PATH: Final = "/etc/rancher/k3s/config.yaml"
REGISTRIES_PATH: Final = "/etc/rancher/k3s/registries.yaml"
# sshd keeps the first value it reads and Ubuntu ships 50-cloud-init.conf, so ours sorts first.
SSHD_DROP_IN_PATH: Final = "/etc/ssh/sshd_config.d/01-sovereign.conf"
INSTALLER_PATH: Final = "/root/k3s-install.sh"
PRIVATE_ADDRESS_SCRIPT_PATH: Final = "/usr/local/sbin/sovereign-private-address"
INSTALL_SCRIPT_PATH: Final = "/usr/local/sbin/sovereign-k3s-install"
# Runs the address wait before every k3s start, not only on the first boot: a reboot can bring
# the private NIC up late just as the first boot can.
K3S_DROP_IN_PATH: Final = "/etc/systemd/system/k3s.service.d/10-private-address.conf"
NETPLAN_PATH: Final = "/etc/netplan/60-sovereign-private.yaml"
# Hetzner's metadata service lists each attached private network with this server's ip and the
# mac_address of its NIC (hcloud-go hcloud/metadata/client.go, PrivateNetworks()).
PRIVATE_NETWORKS_URL: Final = "http://169.254.169.254/hetzner/v1/metadata/private-networks"
# Bounds of the boot (seconds / attempts). The hcloud provider attaches the network only after
# the server was created and started, so the address may need minutes, but never forever.
ADDRESS_WAIT_SECONDS: Final = 120
METADATA_WAIT_SECONDS: Final = 180
NIC_WAIT_SECONDS: Final = 60
DHCP_WAIT_SECONDS: Final = 60
INSTALL_ATTEMPTS: Final = 6

# The MAC of the NIC that carries `want` (this server's private address), read from the YAML
# list the metadata service returns: items start with "- ", fields are "key: value".
MAC_AWK: Final = r"""/^-/ { ip = ""; mac = "" }
{
  line = $0
  sub(/^-?[ \t]*/, "", line)
  i = index(line, ": ")
  if (i == 0) next
  key = substr(line, 1, i - 1)
  value = substr(line, i + 2)
  gsub(/["\r]/, "", value)
  gsub(/[ \t]+$/, "", value)
}
key == "ip" { ip = value }
key == "mac_address" { mac = tolower(value) }
ip == want && mac != "" { print mac; exit }"""

PRIVATE_ADDRESS_SCRIPT: Final = r"""#!/bin/bash
# Written by sovereign cloud-init. k3s binds node-ip, advertise-address and etcd to this
# server's private address, and the other servers join over it. The hcloud provider attaches the
# private network after the server has started, so the NIC can appear late or come up without
# an address. Every wait below is bounded; the last resort is a clear failure, never a hang.
set -euo pipefail

address={address}
metadata={metadata}

log() {{ echo "sovereign-private-address: $*" >&2; }}
fail() {{ log "FAILED: $*"; exit 1; }}

has_address() {{
  ip -4 -o addr show | awk '{{print $4}}' | grep -q "^${{address}}/"
}}

wait_for_address() {{
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    if has_address; then return 0; fi
    sleep 2
  done
  has_address
}}

mac_from_metadata() {{
  curl -sf --connect-timeout 2 --max-time 5 "$metadata" | awk -v want="$address" '{awk}'
}}

interface_with_mac() {{
  local dev
  for dev in /sys/class/net/*; do
    if [[ "$(cat "$dev/address" 2>/dev/null)" == "$1" ]]; then
      basename "$dev"
      return 0
    fi
  done
  return 1
}}

if wait_for_address {address_wait}; then
  exit 0
fi
log "no ${{address}} after {address_wait}s; looking up its NIC by MAC in Hetzner's metadata"

mac=""
deadline=$((SECONDS + {metadata_wait}))
while ((SECONDS < deadline)); do
  mac="$(mac_from_metadata || true)"
  if [[ -n "$mac" ]]; then break; fi
  sleep 5
done
[[ -n "$mac" ]] || fail "after {metadata_wait}s Hetzner's metadata ($metadata) lists no \
private network with ${{address}}: the server is not attached to the region's network"

nic=""
deadline=$((SECONDS + {nic_wait}))
while ((SECONDS < deadline)); do
  nic="$(interface_with_mac "$mac" || true)"
  if [[ -n "$nic" ]]; then break; fi
  sleep 2
done
[[ -n "$nic" ]] || fail "after {nic_wait}s no network interface has MAC ${{mac}}, the private \
NIC of ${{address}}"

log "configuring ${{nic}} (MAC ${{mac}}) by DHCP"
if command -v netplan >/dev/null 2>&1; then
  umask 077
  printf '%s\n' 'network:' '  version: 2' '  ethernets:' '    sovereign-private:' \
    '      match:' "        macaddress: \"${{mac}}\"" '      dhcp4: true' >{netplan}
  netplan apply
elif command -v dhclient >/dev/null 2>&1; then
  ip link set dev "$nic" up
  dhclient -1 -4 "$nic"
else
  fail "${{nic}} has no address and neither netplan nor dhclient is installed to configure it"
fi

wait_for_address {dhcp_wait} || fail "${{nic}} (MAC ${{mac}}) still has no ${{address}} \
{dhcp_wait}s after DHCP; k3s would bind node-ip, advertise-address and etcd to a missing address"
log "${{address}} is up on ${{nic}}"
"""

INSTALL_SCRIPT: Final = r"""#!/bin/bash
# Written by sovereign cloud-init: install the pinned k3s once the private address is up.
# Downloads retry every transient failure (refused connection, DNS, timeout, 5xx); the whole
# download-and-install is retried a bounded number of times, since the upstream installer
# fetches the k3s binary itself without retrying.
set -euo pipefail

version={version}
url={url}
installer={installer}
attempts={attempts}

log() {{ echo "sovereign-k3s-install: $*" >&2; }}

{address_script} || {{
  log "FAILED: k3s not installed: no private address (see above)"
  exit 1
}}

download() {{
  curl -sfL --retry 5 --retry-delay 5 --retry-all-errors --connect-timeout 10 \
    --max-time 120 -o "$installer" "$url"
}}

for ((attempt = 1; attempt <= attempts; attempt++)); do
  if download && INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC=server sh "$installer"; then
    log "k3s ${{version}} installed"
    exit 0
  fi
  log "attempt ${{attempt}}/${{attempts}} to download ${{url}} and install k3s ${{version}} failed"
  if ((attempt < attempts)); then
    sleep $((attempt * 15))
  fi
done
log "FAILED: k3s ${{version}} not installed after ${{attempts}} attempts (see above)"
exit 1
"""

K3S_DROP_IN: Final = f"""\
# Written by sovereign cloud-init: k3s starts only once its private address is up (bounded).
[Service]
ExecStartPre={PRIVATE_ADDRESS_SCRIPT_PATH}
"""

SSHD_HARDENING: Final = """\
# Written by sovereign cloud-init: keys only, no passwords, no forwarding.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
MaxAuthTries 3
LoginGraceTime 30
"""


@dataclass(frozen=True, slots=True)
class ApiEndpoint:
    """Where in-cluster components (Cilium on every node) reach the Kubernetes API."""

    host: str
    port: int


def api_endpoint(cfg: StackConfig) -> ApiEndpoint:
    """The API address every node, worker or server, can reach.

    Never 127.0.0.1:6443: only server nodes listen there, so Cilium on a worker could not
    start (an upstream outage). HA regions use k3s's node-local load balancer; a single-CP
    region uses the server's private address.
    """
    if cfg.control_plane.count > 1:
        return ApiEndpoint(LOCAL_LB_HOST, LOCAL_LB_PORT)
    return ApiEndpoint(cfg.control_plane_ips[0], API_PORT)


def tls_sans(cfg: StackConfig, public_ip: str) -> list[str]:
    """Names the API certificate is valid for; the kubeconfig server must be one of them."""
    return [cfg.region.fqdn, public_ip]


def kubeconfig_server(cfg: StackConfig, public_ip: str) -> str:
    """The API URL written into the exported kubeconfig: the first server's public address."""
    host = public_ip
    if host not in tls_sans(cfg, public_ip):  # pragma: no cover - guards the single source
        raise AssertionError(f"{host} is not a TLS SAN of the API certificate")
    return f"https://{host}:{API_PORT}"


def cluster_dns(cfg: StackConfig) -> str:
    """CoreDNS's address: the 10th address of the region's service CIDR, as k3s expects."""
    return str(ipaddress.ip_network(cfg.service_cidr)[10])


def k3s_server_config(cfg: StackConfig, node: int, public_ip: str, token: str) -> dict[str, Any]:
    """`/etc/rancher/k3s/config.yaml` of control-plane server `node` (0-based)."""
    private_ip = cfg.control_plane_ips[node]
    config: dict[str, Any] = {
        "token": token,
        "write-kubeconfig-mode": "0600",
        "node-ip": private_ip,
        "advertise-address": private_ip,
        "node-external-ip": public_ip,
        "tls-san": tls_sans(cfg, public_ip),
        "cluster-cidr": cfg.pod_cidr,
        "service-cidr": cfg.service_cidr,
        "cluster-dns": cluster_dns(cfg),
        # Cilium replaces all three; leaving any on makes two datapaths fight over the node.
        "flannel-backend": "none",
        "disable-network-policy": True,
        "disable-kube-proxy": True,
        # local-path stays: it is the default StorageClass the vCluster PVCs use.
        "disable": ["traefik", "servicelb"],
        "node-label": [
            f"{REGION_LABEL_KEY}={region_label(cfg)}",
            f"{NODE_ROLE_LABEL_KEY}=control-plane",
        ],
    }
    if node == 0:
        config["cluster-init"] = True
    else:
        config["server"] = f"https://{cfg.control_plane_ips[0]}:{API_PORT}"
    return config


def registries(cfg: StackConfig) -> dict[str, Any]:
    """k3s `registries.yaml`: pull every upstream registry through the proxy project."""
    mirror = cfg.registry_mirror
    return {
        "mirrors": {
            upstream: {
                "endpoint": [f"https://{mirror.host}"],
                "rewrite": {"^(.*)$": f"{project}/$1"},
            }
            for upstream, project in sorted(mirror.projects.items())
        }
    }


def _file(path: str, content: str, permissions: str = "0600") -> dict[str, Any]:
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


def private_address_script(cfg: StackConfig, node: int) -> str:
    """Bounded wait for server `node`'s private address, with a MAC-matched DHCP fallback."""
    return PRIVATE_ADDRESS_SCRIPT.format(
        address=shlex.quote(cfg.control_plane_ips[node]),
        metadata=shlex.quote(PRIVATE_NETWORKS_URL),
        awk=MAC_AWK,
        address_wait=ADDRESS_WAIT_SECONDS,
        metadata_wait=METADATA_WAIT_SECONDS,
        nic_wait=NIC_WAIT_SECONDS,
        dhcp_wait=DHCP_WAIT_SECONDS,
        netplan=NETPLAN_PATH,
    )


def install_script(cfg: StackConfig) -> str:
    """Install the pinned k3s after the address wait, retrying transient failures (bounded)."""
    return INSTALL_SCRIPT.format(
        version=shlex.quote(cfg.control_plane.k3s_version),
        url=shlex.quote(K3S_INSTALL_URL),
        installer=shlex.quote(INSTALLER_PATH),
        attempts=INSTALL_ATTEMPTS,
        address_script=PRIVATE_ADDRESS_SCRIPT_PATH,
    )


def cloud_config(cfg: StackConfig, node: int, public_ip: str, token: str) -> dict[str, Any]:
    """The cloud-config document of one control-plane server."""
    files = [
        _file(K3S_CONFIG_PATH, yaml.safe_dump(k3s_server_config(cfg, node, public_ip, token))),
        _file(PRIVATE_ADDRESS_SCRIPT_PATH, private_address_script(cfg, node), "0700"),
        _file(INSTALL_SCRIPT_PATH, install_script(cfg), "0700"),
        _file(K3S_DROP_IN_PATH, K3S_DROP_IN, "0644"),
        _file(SSHD_DROP_IN_PATH, SSHD_HARDENING, "0644"),
        # Operators' keys go in through cloud-init, not as Hetzner SSH keys: Hetzner refuses the
        # same public key twice per project, which would break the second region's stack.
        {
            **_file("/root/.ssh/authorized_keys", "\n".join(cfg.access.ssh_public_keys) + "\n"),
            "append": True,
        },
    ]
    if cfg.registry_mirror.enabled:
        files.append(_file(REGISTRIES_PATH, yaml.safe_dump(registries(cfg))))
    return {
        "write_files": files,
        # The install script is last: its exit status is runcmd's, so a boot that could not
        # bring up the private address or install k3s ends in cloud-init status "error".
        "runcmd": [["systemctl", "restart", "ssh"], [INSTALL_SCRIPT_PATH]],
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line file contents as literal blocks: scripts read (and diff) line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    # The stubs leave represent_scalar's value untyped.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)  # pyright: ignore[reportUnknownMemberType]


_BlockDumper.add_representer(str, _str)


def render_user_data(cfg: StackConfig, node: int, public_ip: str, token: str) -> str:
    """user_data as Hetzner receives it."""
    body = yaml.dump(
        cloud_config(cfg, node, public_ip, token),
        Dumper=_BlockDumper,
        sort_keys=False,
        width=1000,
    )
    return "#cloud-config\n" + body
