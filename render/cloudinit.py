"""k3s server cloud-init, built as data and rendered to YAML (pure; no Pulumi resources).

The same `ApiEndpoint` model feeds the k3s flags (`--tls-san`, `--advertise-address`) and
Cilium's `k8sServiceHost`/`k8sServicePort`, so the two can never disagree.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import yaml

from config.day2 import OBJECT_STORAGE_HOST
from config.models import StackConfig
from config.server_types import CATALOGUE as SERVER_TYPES
from render.apiserver import (
    AUDIT_POLICY,
    AUDIT_POLICY_PATH,
    DEPLOYER_BINDING_PATH,
    audit_args,
    deployer_binding_manifest,
)
from render.metadata_fence import (
    FENCE_RULES_PATH,
    FENCE_UNIT,
    FENCE_UNIT_PATH,
    FENCE_UNIT_TEXT,
    fence_rules,
)
from render.naming import (
    NODE_ROLE_LABEL_KEY,
    REGION_LABEL_KEY,
    region_label,
    worker_node_labels,
)
from render.pins import Download, k3s_binary, k3s_installer

# Hetzner refuses user_data above 32 KiB when the server is created.
USER_DATA_CAP: Final = 32_768
K3S_TOKEN_LENGTH: Final = 64
API_PORT: Final = 6443
# Where each kind of k3s node serves the Kubernetes API on its own loopback. An agent runs a
# client-side load balancer on 127.0.0.1:6444 (`--lb-server-port`, default 6444; with k3s's
# supervisor and apiserver on one port it carries both). A server runs the apiserver on :6443
# and no such load balancer: k3s sets `agentConfig.DisableLoadBalancer =
# !DisableAPIServer` for its embedded agent. So no loopback address answers on both kinds.
# source: k3s-io/k3s pkg/cli/server/server.go @ 005499a9 and pkg/cli/cmds/agent.go
# (LBServerPortFlag, Value 6444), docs.k3s.io/cli/agent (`--lb-server-port`); checked 2026-12-04.
NodeKind = Literal["server", "agent"]
LOOPBACK_API: Final[Mapping[str, tuple[str, int]]] = {
    "server": ("127.0.0.1", API_PORT),
    "agent": ("127.0.0.1", 6444),
}
# Worst-case placeholders for the size check at preview, before Hetzner has assigned addresses.
WORST_CASE_IPV4: Final = "255.255.255.255"

K3S_CONFIG_PATH: Final = "/etc/rancher/k3s/config.yaml"
REGISTRIES_PATH: Final = "/etc/rancher/k3s/registries.yaml"
# sshd keeps the first value it reads and Ubuntu ships 50-cloud-init.conf, so ours sorts first.
SSHD_DROP_IN_PATH: Final = "/etc/ssh/sshd_config.d/01-sovereign.conf"
INSTALLER_PATH: Final = "/root/k3s-install.sh"
BINARY_DOWNLOAD_PATH: Final = "/root/k3s-download"
PRIVATE_ADDRESS_SCRIPT_PATH: Final = "/usr/local/sbin/sovereign-private-address"
INSTALL_SCRIPT_PATH: Final = "/usr/local/sbin/sovereign-k3s-install"
# Runs the address wait before every k3s start, not only on the first boot: a reboot can bring
# the private NIC up late just as the first boot can. The k3s installer names the unit `k3s` for
# a server and `k3s-agent` for an agent.
K3S_DROP_IN_PATH: Final = "/etc/systemd/system/k3s.service.d/10-private-address.conf"
K3S_AGENT_DROP_IN_PATH: Final = "/etc/systemd/system/k3s-agent.service.d/10-private-address.conf"
# A worker's private address is Hetzner's choice within the workers' subnet: the first boot reads
# it from the metadata service, keeps it here and hands it to k3s as `node-ip` through a config
# drop-in (k3s merges /etc/rancher/k3s/config.yaml.d/*.yaml after config.yaml;
# docs.k3s.io/installation/configuration "Multiple Config Files", checked 2026-12-04).
ADDRESS_RECORD_PATH: Final = "/var/lib/sovereign/private-address"
NODE_IP_CONFIG_PATH: Final = "/etc/rancher/k3s/config.yaml.d/10-node-ip.yaml"
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
# How long a joining server waits for the server it joins: the deployer's own wait for every
# node (components/kubeconfig.WAIT_SECONDS) has the same bound.
JOIN_WAIT_SECONDS: Final = 900

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

# The first private address the metadata service lists (a worker is in one network).
FIRST_IP_AWK: Final = r"""{
  line = $0
  sub(/^-?[ \t]*/, "", line)
}
line ~ /^ip: / {
  value = substr(line, 5)
  gsub(/["\r \t]/, "", value)
  print value
  exit
}"""

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
{discover}
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

# Only in a worker's copy of the script above (its address is not pinned): read it once from the
# metadata service and keep it, so every later start waits for that same address.
DISCOVER_ADDRESS: Final = r"""if [[ -z "$address" && -s {record} ]]; then
  address="$(cat {record})"
elif [[ -z "$address" ]]; then
  deadline=$((SECONDS + {metadata_wait}))
  while ((SECONDS < deadline)); do
    address="$(curl -sf --connect-timeout 2 --max-time 5 "$metadata" \
      | awk '{first_ip_awk}' || true)"
    if [[ -n "$address" ]]; then break; fi
    sleep 5
  done
  [[ -n "$address" ]] || fail "after {metadata_wait}s Hetzner's metadata ($metadata) lists no \
private network: the server is not attached to the region's network"
  umask 077
  mkdir -p "$(dirname {record})" "$(dirname {node_ip_config})"
  printf '%s\n' "$address" >{record}
  printf 'node-ip: %s\n' "$address" >{node_ip_config}
  log "Hetzner attached ${{address}}; k3s binds node-ip to it"
fi
"""

INSTALL_SCRIPT: Final = r"""#!/bin/bash
# Written by sovereign cloud-init: install the pinned k3s once the private address is up.
# Downloads retry every transient failure (refused connection, DNS, timeout, 5xx); the whole
# download-and-install is retried a bounded number of times. Each download is checked against
# its sha256 pinned in the program (render/k3s_downloads.yaml) before it is used; a mismatch is
# not transient and stops the boot at once, naming both digests.
set -euo pipefail

version={version}
# install.sh at the release tag (not get.k3s.io) and the release's binary; empty: not pinned.
url={url}
url_sha256={url_sha256}
binary_url={binary_url}
binary_sha256={binary_sha256}
installer={installer}
binary={binary}
attempts={attempts}
# The server this one joins (empty on the server that starts the cluster).
join={join}
join_wait={join_wait}

log() {{ echo "sovereign-k3s-install: $*" >&2; }}

{address_script} || {{
  log "FAILED: k3s not installed: no private address (see above)"
  exit 1
}}

# A joining server comes up while cp-1 may still be installing k3s: wait, bounded, until the
# server it joins answers (k3s serves /cacerts without credentials) rather than spend the
# install attempts below on a cluster that does not exist yet.
if [[ -n "$join" ]]; then
  deadline=$((SECONDS + join_wait))
  until curl -ksf --connect-timeout 5 --max-time 10 -o /dev/null "$join/cacerts"; do
    if ((SECONDS >= deadline)); then
      log "FAILED: ${{join}} did not answer for ${{join_wait}}s: the server this one joins \
(cp-1, or the API load balancer in front of it) is not up; see its cloud-init status"
      exit 1
    fi
    sleep 10
  done
  log "${{join}} answers; joining"
fi

download() {{
  curl -sfL --retry 5 --retry-delay 5 --retry-all-errors --connect-timeout 10 \
    --max-time 300 -o "$1" "$2"
}}

verify() {{
  local got
  if [[ -z "$2" ]]; then
    log "WARNING: no sha256 pinned for $3 (./sovereign plan lists it)"
    return 0
  fi
  got="$(sha256sum "$1" | cut -d ' ' -f 1)"
  if [[ "$got" != "$2" ]]; then
    log "FAILED: $3 has sha256 ${{got}}, but the program pins $2: not installing it"
    exit 1
  fi
}}

fetch() {{
  download "$installer" "$url" || return 1
  verify "$installer" "$url_sha256" "$url"
  # Without a pinned binary the installer downloads it and checks the release's checksum file.
  [[ -n "$binary_sha256" ]] || return 0
  download "$binary" "$binary_url" || return 1
  verify "$binary" "$binary_sha256" "$binary_url"
  install -m 0755 "$binary" /usr/local/bin/k3s
}}

for ((attempt = 1; attempt <= attempts; attempt++)); do
  if fetch && INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC={kind} \
    INSTALL_K3S_SKIP_DOWNLOAD={skip_download} \
    INSTALL_K3S_SKIP_START={skip_start} INSTALL_K3S_SKIP_ENABLE={skip_start} \
    sh "$installer"; then
    log "k3s ${{version}} installed"
    exit 0
  fi
  log "attempt ${{attempt}}/${{attempts}} to download and install k3s ${{version}} failed"
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
RESTORE_SCRIPT_PATH: Final = "/root/k3s-restore.sh"
# k3s uses CA files found here before its first start instead of generating its own.
# source: https://docs.k3s.io/cli/certificate ("Using Custom CA Certificates"; k3s-io/docs
# docs/cli/certificate.md @ 4097de9, checked 2026-11-27).
K3S_TLS_DIR: Final = "/var/lib/rancher/k3s/server/tls"
# Secret k3s reads its etcd-s3 settings from at every snapshot (kube-system); the credentials then
# never sit in user_data. source: k3s-io/k3s docs/adrs/etcd-s3-secret.md (accepted 2024-02-06,
# revised 2024-06-10; checked 2026-11-27).
ETCD_S3_SECRET_NAME: Final = "k3s-etcd-snapshot-s3-config"

BootMode = Literal["init", "join", "restore"]
# The files k3s requires for a custom CA, relative to K3S_TLS_DIR; the etcd ones are needed even
# without embedded etcd; service.key signs service-account tokens (same source as K3S_TLS_DIR).
CA_NAMES: Final = ("server-ca", "client-ca", "request-header-ca", "etcd/peer-ca", "etcd/server-ca")
SERVICE_KEY_FILE: Final = "service.key"
CA_FILES: Final = (SERVICE_KEY_FILE, *(f"{ca}.{ext}" for ca in CA_NAMES for ext in ("crt", "key")))
# Each minted CA file's PEM at its largest (components/pki.py mints them): the RSA 2048 service
# key (about 1.7 KB), an ECDSA P-256 key (about 230 bytes), a CA certificate whose subject carries
# the region prefix (about 700 bytes). tests/test_cloudinit.py measures real ones with openssl.
WORST_CASE_RSA_KEY_PEM: Final = "x" * 1800
WORST_CASE_EC_KEY_PEM: Final = "x" * 320
WORST_CASE_CERT_PEM: Final = "x" * 1000


def worst_case_pem(name: str) -> str:
    if name == SERVICE_KEY_FILE:
        return WORST_CASE_RSA_KEY_PEM
    return WORST_CASE_EC_KEY_PEM if name.endswith(".key") else WORST_CASE_CERT_PEM


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
    """The API address every node kind reaches: the join endpoint, never a loopback address.

    127.0.0.1:6443 answers only on servers and 127.0.0.1:6444 only on agents (LOOPBACK_API),
    so on a region with workers either would leave Cilium without an API on one kind of node.
    The stable endpoint (the API load balancer's private address on HA, else cp-1's) is on the
    private network every node is attached to.
    """
    return ApiEndpoint(join_host(cfg), API_PORT)


def reachable_api(cfg: StackConfig, kind: NodeKind) -> frozenset[tuple[str, int]]:
    """Every (host, port) at which a node of `kind` finds a Kubernetes API server."""
    private = {(ip, API_PORT) for ip in cfg.control_plane_ips}
    if api_load_balancer(cfg):
        private.add((cfg.api.private_ip, API_PORT))
    return frozenset({LOOPBACK_API[kind], *private})


def node_kinds(cfg: StackConfig) -> tuple[NodeKind, ...]:
    """The kinds of k3s node this region runs: servers always, agents with any worker."""
    return ("server", "agent") if any(p.most_servers for p in cfg.workers.values()) else ("server",)


def api_load_balancer(cfg: StackConfig) -> bool:
    """One Hetzner LB on 6443 in front of the servers: by default exactly when there are three."""
    if cfg.api.load_balancer is not None:
        return cfg.api.load_balancer
    return cfg.control_plane.count > 1


# Server label: "true" where k3s runs with `secrets-encryption` (every server of a region created
# with it), "false" on the servers of a region created before. Read back at preview.
SECRETS_ENCRYPTION_LABEL_KEY: Final = "openova.io/secrets-encryption"

# Server label recording which API endpoint the region's certificates were issued for: `lb` (the
# API load balancer's addresses are SANs) or `direct` (cp-1's address). Read back at preview.
API_ENDPOINT_LABEL_KEY: Final = "openova.io/api-endpoint"


def api_endpoint_label(cfg: StackConfig) -> str:
    return "lb" if api_load_balancer(cfg) else "direct"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerBoot:
    """What one server's first boot needs beyond the config, decided by the control plane.

    `mode`: `init` starts a new cluster (cluster-init, the minted CAs on disk), `join` joins the
    running one through the API endpoint, `restore` starts from an S3 etcd snapshot.
    `api_public_ip` is the API load balancer's public address (None without one).
    """

    mode: BootMode
    api_public_ip: str | None = None
    ca_files: Mapping[str, str] = field(default_factory=dict[str, str])
    restore_credentials: tuple[str, str] | None = None
    # The registry mirror's password (a secret config value), for registries.yaml.
    registry_password: str | None = None
    # Set only on the server this `up` replaces: a value that changes with each replacement
    # request, so its user_data (a replacing input) differs from the running server's even when
    # everything else renders the same (a joiner's token, addresses and join mode never change).
    replacement_generation: str | None = None
    # k3s `secrets-encryption`: on for every server of a region created with it, off for the new
    # servers of a region whose running servers started without it (a value k3s requires to
    # match on every server; components/control_plane.secrets_encryption).
    secrets_encryption: bool = True


def default_boot(cfg: StackConfig, node: int) -> ServerBoot:
    return ServerBoot(mode="init" if node == 0 else "join")


def worst_case_boot(cfg: StackConfig, node: int) -> ServerBoot:
    """The largest first boot of server `node`: every CA file, LB address, restore script."""
    secret = "x" * 128
    return ServerBoot(
        mode="restore"
        if node == 0 and cfg.control_plane.count == 1
        else default_boot(cfg, node).mode,
        api_public_ip=WORST_CASE_IPV4,
        ca_files={name: worst_case_pem(name) for name in CA_FILES} if node == 0 else {},
        restore_credentials=(secret, secret),
        registry_password=secret if cfg.registry_mirror.username is not None else None,
        replacement_generation="f" * 8,
    )


def tls_sans(cfg: StackConfig, public_ip: str, api_public_ip: str | None = None) -> list[str]:
    """Names the API certificate is valid for; the kubeconfig server must be one of them."""
    sans = [cfg.region.fqdn, public_ip]
    if api_load_balancer(cfg):
        sans.append(cfg.api.private_ip)
        if api_public_ip is not None:
            sans.append(api_public_ip)
    return sans


def api_host(cfg: StackConfig, first_public_ip: str, api_public_ip: str | None) -> str:
    """Where the kubeconfig and the provider reach the API: the LB if there is one, else cp-1."""
    if api_load_balancer(cfg):
        if not cfg.api.public:
            # No public interface: the deployer is inside the region's network.
            return cfg.api.private_ip
        if api_public_ip is None:  # pragma: no cover - the control plane always passes it
            raise AssertionError("an API load balancer without an address")
        return api_public_ip
    return first_public_ip


def kubeconfig_server(cfg: StackConfig, first_public_ip: str, api_public_ip: str | None) -> str:
    """The API URL written into the exported kubeconfig; always a TLS SAN of the API cert."""
    host = api_host(cfg, first_public_ip, api_public_ip)
    if host not in tls_sans(cfg, first_public_ip, api_public_ip):  # pragma: no cover
        raise AssertionError(f"{host} is not a TLS SAN of the API certificate")
    return f"https://{host}:{API_PORT}"


def join_host(cfg: StackConfig) -> str:
    """The stable endpoint: the API LB's private address, which reaches whichever servers are
    healthy, or cp-1 without an LB."""
    return cfg.api.private_ip if api_load_balancer(cfg) else cfg.control_plane_ips[0]


def join_url(cfg: StackConfig) -> str:
    """Where a joining server or an agent registers."""
    return f"https://{join_host(cfg)}:{API_PORT}"


def object_storage_location(cfg: StackConfig) -> str | None:
    """The Object Storage location of the backups: configured, else the region's if it has one."""
    if cfg.backups.location is not None:
        return cfg.backups.location
    if cfg.region.location in ("fsn1", "nbg1", "hel1"):
        return cfg.region.location
    return None


def etcd_s3_settings(cfg: StackConfig) -> dict[str, str]:
    """The non-secret etcd-s3 keys (k3s flag names), shared by the Secret and the restore."""
    location = object_storage_location(cfg) or ""
    return {
        "etcd-s3-endpoint": OBJECT_STORAGE_HOST.format(location=location),
        "etcd-s3-region": location,
        "etcd-s3-bucket": cfg.backups.bucket or "",
        "etcd-s3-folder": cfg.backups.folder or cfg.region.key,
    }


def cluster_dns(cfg: StackConfig) -> str:
    """CoreDNS's address: the 10th address of the region's service CIDR, as k3s expects."""
    return str(ipaddress.ip_network(cfg.service_cidr)[10])


# The k3s flags that hand node initialisation to an external cloud controller (the Hetzner CCM):
# k3s's own controller off on servers, and every kubelet registers with cloud-provider=external,
# which taints its node `node.cloudprovider.kubernetes.io/uninitialized` until the CCM has set
# its providerID and addresses. source: https://docs.k3s.io/cli/server (--disable-cloud-
# controller) and hetznercloud/hcloud-cloud-controller-manager docs/guides/quickstart.md
# (kubelet --cloud-provider=external), checked 2026-12-04.
DISABLE_CLOUD_CONTROLLER: Final = "disable-cloud-controller"
EXTERNAL_CLOUD_PROVIDER: Final = "cloud-provider=external"


def cloud_controller_flags(cfg: StackConfig, kind: NodeKind) -> dict[str, Any]:
    """k3s config keys of sovereign:cloudController (none for k3s's built-in controller)."""
    if cfg.cloud_controller != "hetzner":
        return {}
    flags: dict[str, Any] = {"kubelet-arg": [EXTERNAL_CLOUD_PROVIDER]}
    if kind == "server":
        flags[DISABLE_CLOUD_CONTROLLER] = True
    return flags


def k3s_server_config(
    cfg: StackConfig, node: int, public_ip: str, token: str, boot: ServerBoot | None = None
) -> dict[str, Any]:
    """`/etc/rancher/k3s/config.yaml` of control-plane server `node` (0-based)."""
    boot = boot or default_boot(cfg, node)
    private_ip = cfg.control_plane_ips[node]
    config: dict[str, Any] = {
        "token": token,
        "write-kubeconfig-mode": "0600",
        "node-ip": private_ip,
        "advertise-address": private_ip,
        "node-external-ip": public_ip,
        "tls-san": tls_sans(cfg, public_ip, boot.api_public_ip),
        "cluster-cidr": cfg.pod_cidr,
        "service-cidr": cfg.service_cidr,
        "cluster-dns": cluster_dns(cfg),
        # Cilium replaces all three; leaving any on makes two datapaths fight over the node.
        "flannel-backend": "none",
        "disable-network-policy": True,
        "disable-kube-proxy": True,
        # local-path stays: k3s's default StorageClass, a vCluster's data class on request
        # (vclusters.<name>.storageClass; hcloud-volumes is the program's default).
        "disable": ["traefik", "servicelb"],
        "node-label": [
            f"{REGION_LABEL_KEY}={region_label(cfg)}",
            f"{NODE_ROLE_LABEL_KEY}=control-plane",
        ],
        **cloud_controller_flags(cfg, "server"),
        # Local snapshots always (the server's own disk); a copy off the server with backups on.
        "etcd-snapshot-schedule-cron": cfg.backups.schedule,
        "etcd-snapshot-retention": cfg.backups.retention,
        # Every Secret (the S3 keys' own Secret among them) is AES-encrypted in etcd, so no
        # snapshot on the server's disk or in the bucket holds one in plain text. On from the
        # first start of every server of a new region; a server joining a region that runs
        # without it must not have it either (a critical value, docs.k3s.io/cli/server).
        # source: https://docs.k3s.io/security/secrets-encryption and
        # https://docs.k3s.io/cli/secrets-encrypt (checked 2026-12-04).
        **({"secrets-encryption": True} if boot.secrets_encryption else {}),
        # Every server's API server keeps its own bounded audit log (render/apiserver.py).
        "kube-apiserver-arg": audit_args(),
    }
    if cfg.backups.enabled:
        # The Secret's loader never reads a retention (k3s-io/k3s pkg/etcd/s3/config_secret.go,
        # getConfigFromSecret @ 4755269, checked 2026-12-04), so without this key the bucket is
        # never pruned. Endpoint, bucket, folder and keys stay in the Secret only: those keys in
        # this file would make k3s ignore the whole Secret (pkg/etcd/s3/s3.go, GetClient).
        config["etcd-s3"] = True
        config["etcd-s3-config-secret"] = ETCD_S3_SECRET_NAME
        config["etcd-s3-retention"] = cfg.backups.retention
    if boot.mode == "join":
        config["server"] = join_url(cfg)
    else:
        config["cluster-init"] = True
    return config


def ca_write_files(ca_files: Mapping[str, str]) -> list[dict[str, Any]]:
    """The minted CAs at k3s's custom-CA paths: keys 0600, certificates 0644."""
    return [
        _file(f"{K3S_TLS_DIR}/{name}", pem, "0600" if name.endswith(".key") else "0644")
        for name, pem in sorted(ca_files.items())
    ]


# k3s renews its 365-day leaf certificates only when it starts and fewer than this many days
# remain (k3s-io/k3s #12171; docs.k3s.io/cli/certificate "Client and Server Certificates",
# checked 2026-12-04). A server that never restarts would lose its certificates around day 365.
K3S_RENEW_WINDOW_DAYS: Final = 120
K3S_LEAF_DAYS: Final = 365
# The kubelet's and the agent's client certificates (the same renewal at start).
K3S_AGENT_DIR: Final = "/var/lib/rancher/k3s/agent"
CERT_RENEW_SCRIPT_PATH: Final = "/usr/local/sbin/sovereign-k3s-cert-renew"
CERT_RENEW_UNIT: Final = "sovereign-k3s-cert-renew"
CERT_RENEW_SERVICE_PATH: Final = f"/etc/systemd/system/{CERT_RENEW_UNIT}.service"
CERT_RENEW_TIMER_PATH: Final = f"/etc/systemd/system/{CERT_RENEW_UNIT}.timer"
# One server at a time: each checks on its own day of the month (cp-1 the 1st, cp-2 the 8th,
# cp-3 the 15th), 03:00 UTC, so no two servers ever restart k3s on the same day.
CERT_RENEW_DAYS_OF_MONTH: Final = (1, 8, 15)
CERT_RENEW_TIME: Final = "03:00:00"

CERT_RENEW_SCRIPT: Final = r"""#!/bin/bash
# Written by sovereign cloud-init: k3s renews its certificates only at start (< {window} days left).
set -euo pipefail

tls={tls}
agent={agent}
window_seconds=$(({window} * 86400))

log() {{ echo "{unit}: $*" >&2; }}

expiring=""
while IFS= read -r cert; do
  if ! openssl x509 -checkend "$window_seconds" -noout -in "$cert" >/dev/null; then
    expiring="$cert"
    break
  fi
done < <(
  find "$tls" -name '*.crt' ! -name '*-ca.crt'
  find "$agent" -maxdepth 1 -name '*.crt' ! -name '*-ca.crt'
)

if [[ -z "$expiring" ]]; then
  log "no k3s certificate expires within {window} days"
  exit 0
fi
log "${{expiring}} expires within {window} days: restarting k3s to renew"
systemctl restart k3s
log "k3s restarted"
"""

CERT_RENEW_SERVICE: Final = f"""\
[Unit]
Description=Restart k3s when its certificates are due for renewal
After=k3s.service

[Service]
Type=oneshot
ExecStart={CERT_RENEW_SCRIPT_PATH}
"""


def cert_renew_timer(node: int) -> str:
    """Monthly, on server `node`'s own day; a missed run (server off) runs at the next boot."""
    day = CERT_RENEW_DAYS_OF_MONTH[node]
    return (
        "[Unit]\n"
        "Description=Monthly check of the k3s certificates' expiry\n\n"
        "[Timer]\n"
        f"OnCalendar=*-*-{day:02d} {CERT_RENEW_TIME} UTC\n"
        "Persistent=true\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def cert_renew_script(tls: str = K3S_TLS_DIR, agent: str = K3S_AGENT_DIR) -> str:
    """The check the timer runs; the server's and the agent's certificate directories by default."""
    return CERT_RENEW_SCRIPT.format(
        window=K3S_RENEW_WINDOW_DAYS,
        unit=CERT_RENEW_UNIT,
        tls=shlex.quote(tls),
        agent=shlex.quote(agent),
    )


RESTORE_SCRIPT: Final = r"""#!/bin/bash
# Written by sovereign cloud-init: restore etcd from an S3 snapshot, and only then start k3s.
# Every step must succeed. k3s started after a failed restore would come up with a new, empty etcd
# under the same CAs and token, and the program would take it for the restored cluster. This
# script is the last runcmd item, so its failure is cloud-init's: status "error", with the
# reason below in /var/log/cloud-init-output.log.
set -euo pipefail
# The S3 keys are in this file: it is removed whatever happens.
trap 'rm -f -- "$0"' EXIT
export PATH="$PATH:/usr/local/sbin"

snapshot={snapshot}
source={source}

log() {{ echo "sovereign-k3s-restore: $*" >&2; }}
fail() {{
  log "FAILED: $*"
  log "k3s was NOT started and is not enabled: this server holds no cluster. Fix the cause, \
then replace this server again (sovereign:replacement.server)."
  exit 1
}}

{install} || fail "k3s is not installed (see above); etcd was not restored"
export AWS_ACCESS_KEY_ID={access_key}
export AWS_SECRET_ACCESS_KEY={secret_key}
k3s server --cluster-reset --etcd-s3 --cluster-reset-restore-path="$snapshot" {flags} ||
  fail "restoring snapshot ${{snapshot}} from ${{source}} failed (see k3s above): check the \
name against 'k3s etcd-snapshot ls', the bucket, the folder and the S3 keys"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
log "etcd restored from ${{snapshot}}; starting k3s"
systemctl enable --now k3s || fail "k3s did not start on the restored etcd (journalctl -u k3s)"
log "k3s runs on the restored etcd"
"""


def restore_script(cfg: StackConfig, snapshot: str, credentials: tuple[str, str]) -> str:
    """Install k3s without starting it, restore etcd from S3, then start k3s; stop at any failure.

    The etcd-s3 Secret is unused by a restore, which takes flags.
    """
    s3 = etcd_s3_settings(cfg)
    flags = " ".join(f"--{key}={shlex.quote(value)}" for key, value in s3.items())
    return RESTORE_SCRIPT.format(
        snapshot=shlex.quote(snapshot),
        source=shlex.quote(f"s3://{s3['etcd-s3-bucket']}/{s3['etcd-s3-folder']}"),
        install=INSTALL_SCRIPT_PATH.rsplit("/", 1)[-1],
        access_key=shlex.quote(credentials[0]),
        secret_key=shlex.quote(credentials[1]),
        flags=flags,
    )


def registries(cfg: StackConfig, password: str | None = None) -> dict[str, Any]:
    """k3s `registries.yaml`: pull every upstream registry through its proxy project.

    Format per https://docs.k3s.io/installation/private-registry (checked 2026-11-27):
    `mirrors.<upstream>.endpoint/rewrite`, credentials in `configs.<mirror host>.auth`. The
    password only ever arrives here inside the secret user_data Output.
    """
    mirror = cfg.registry_mirror
    doc: dict[str, Any] = {
        "mirrors": {
            upstream: {
                "endpoint": [f"https://{mirror.host}"],
                "rewrite": {"^(.*)$": f"{project}/$1"},
            }
            for upstream, project in sorted(mirror.projects.items())
        }
    }
    if mirror.username is not None and password is not None:
        doc["configs"] = {
            mirror.host: {"auth": {"username": mirror.username, "password": password}}
        }
    return doc


def _file(path: str, content: str, permissions: str = "0600") -> dict[str, Any]:
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


def private_address_script(address: str | None) -> str:
    """Bounded wait for the node's private address, with a MAC-matched DHCP fallback.

    `address` is a server's pinned address; None (a worker) reads it from the metadata service.
    """
    discover = ""
    if address is None:
        discover = "\n" + DISCOVER_ADDRESS.format(
            record=shlex.quote(ADDRESS_RECORD_PATH),
            node_ip_config=shlex.quote(NODE_IP_CONFIG_PATH),
            first_ip_awk=FIRST_IP_AWK,
            metadata_wait=METADATA_WAIT_SECONDS,
        )
    return PRIVATE_ADDRESS_SCRIPT.format(
        address=shlex.quote(address or ""),
        metadata=shlex.quote(PRIVATE_NETWORKS_URL),
        discover=discover,
        awk=MAC_AWK,
        address_wait=ADDRESS_WAIT_SECONDS,
        metadata_wait=METADATA_WAIT_SECONDS,
        nic_wait=NIC_WAIT_SECONDS,
        dhcp_wait=DHCP_WAIT_SECONDS,
        netplan=NETPLAN_PATH,
    )


def k3s_downloads(cfg: StackConfig, server_type: str | None = None) -> tuple[Download, Download]:
    """The installer and the binary a node downloads, with their pins: the binary is the one of
    the node's own architecture (a worker pool's type may be arm64 while the servers are x86)."""
    version = cfg.control_plane.k3s_version
    arch = SERVER_TYPES.types[server_type or cfg.control_plane.server_type].arch
    return k3s_installer(version), k3s_binary(version, arch)


def install_script(
    cfg: StackConfig,
    *,
    kind: NodeKind = "server",
    start: bool = True,
    join: str = "",
    server_type: str | None = None,
) -> str:
    """Install the pinned k3s after the address wait, retrying transient failures (bounded).

    `kind` is k3s's mode (server or agent); `start=False` installs without starting or enabling
    k3s (a reboot must not start it either), for a server that restores etcd first; `join` is
    the URL of the server this one joins, which it waits for first (bounded).
    """
    version = cfg.control_plane.k3s_version
    installer, binary = k3s_downloads(cfg, server_type)
    return INSTALL_SCRIPT.format(
        kind=kind,
        skip_start="false" if start else "true",
        version=shlex.quote(version),
        url=shlex.quote(installer.url),
        url_sha256=shlex.quote(installer.sha256 or ""),
        binary_url=shlex.quote(binary.url),
        binary_sha256=shlex.quote(binary.sha256 or ""),
        skip_download="true" if binary.sha256 else "false",
        installer=shlex.quote(INSTALLER_PATH),
        binary=shlex.quote(BINARY_DOWNLOAD_PATH),
        attempts=INSTALL_ATTEMPTS,
        address_script=PRIVATE_ADDRESS_SCRIPT_PATH,
        join=shlex.quote(join),
        join_wait=JOIN_WAIT_SECONDS,
    )


# The fence first: k3s requires it, and no pod may start before it is in place.
FIRST_RUNCMD: Final[list[list[str]]] = [
    ["systemctl", "restart", "ssh"],
    ["systemctl", "enable", "--now", FENCE_UNIT],
]


def node_boot(
    cfg: StackConfig,
    kind: NodeKind,
    k3s_config: Mapping[str, Any],
    *,
    address: str | None,
    registry_password: str | None = None,
    extra_files: list[dict[str, Any]] | None = None,
    start: bool = True,
    server_type: str | None = None,
) -> dict[str, Any]:
    """The cloud-config every k3s node boots with; `kind` is the only difference in the boot.

    Servers and agents get the same bounded boot: private address wait (pinned `address`, or
    read from the metadata service when None), the systemd drop-in that repeats it before every
    start, hardened sshd, operators' keys, the registry mirror, and the install that waits for
    the node it joins and retries its download.
    """
    files = [
        _file(K3S_CONFIG_PATH, _dump(dict(k3s_config))),
        _file(PRIVATE_ADDRESS_SCRIPT_PATH, private_address_script(address), "0700"),
        _file(
            K3S_DROP_IN_PATH if kind == "server" else K3S_AGENT_DROP_IN_PATH, K3S_DROP_IN, "0644"
        ),
        _file(SSHD_DROP_IN_PATH, SSHD_HARDENING, "0644"),
        # The metadata fence (render/metadata_fence.py): loaded before k3s at every boot.
        _file(FENCE_RULES_PATH, fence_rules()),
        _file(FENCE_UNIT_PATH, FENCE_UNIT_TEXT, "0644"),
        # Operators' keys go in through cloud-init, not as Hetzner SSH keys: Hetzner refuses the
        # same public key twice per project, which would break the second region's stack.
        {
            **_file("/root/.ssh/authorized_keys", "\n".join(cfg.access.ssh_public_keys) + "\n"),
            "append": True,
        },
    ]
    if cfg.registry_mirror.enabled:
        files.append(_file(REGISTRIES_PATH, _dump(registries(cfg, registry_password))))
    files += extra_files or []
    join = str(k3s_config.get("server", ""))
    script = install_script(cfg, kind=kind, start=start, join=join, server_type=server_type)
    files.append(_file(INSTALL_SCRIPT_PATH, script, "0700"))
    # The install script runs last on a normal boot: its exit status is runcmd's, so a boot that
    # could not bring up the private address or install k3s ends in cloud-init status "error".
    runcmd: list[list[str]] = [*FIRST_RUNCMD, [INSTALL_SCRIPT_PATH]]
    # nft for the fence. cloud-init's package module runs once per instance, not at every boot:
    # cc_package_update_upgrade_install has frequency PER_INSTANCE and `packages` alone does one
    # package-index update then the install (canonical/cloud-init@174ee22e, cloudinit/config/
    # cc_package_update_upgrade_install.py; Debian's cloud-init 22.4.2 the same; checked
    # 2026-12-04). It runs in the final stage before scripts-user, i.e. before runcmd (Debian's
    # /etc/cloud/cloud.cfg). A reboot finds nft installed; no package_upgrade is ever set.
    return {"packages": ["nftables"], "write_files": files, "runcmd": runcmd}


def server_files(cfg: StackConfig, boot: ServerBoot) -> list[dict[str, Any]]:
    """What only a server writes: the apiserver's audit policy and, unless it joins, the CAs."""
    files = [_file(AUDIT_POLICY_PATH, AUDIT_POLICY)]
    if boot.mode != "join":
        # A joining server takes the CAs from the cluster; files on disk would conflict.
        files += ca_write_files(boot.ca_files)
        # Only the server that starts the cluster: k3s re-applies this directory at every start,
        # so a joiner writing it too would undo a revocation (docs/security.md) when it joins.
        files.append(_file(DEPLOYER_BINDING_PATH, deployer_binding_manifest(cfg)))
    return files


def cloud_config(
    cfg: StackConfig, node: int, public_ip: str, token: str, boot: ServerBoot | None = None
) -> dict[str, Any]:
    """The cloud-config document of one control-plane server."""
    boot = boot or default_boot(cfg, node)
    snapshot = cfg.replacement.restore_snapshot
    restoring = (
        boot.mode == "restore" and snapshot is not None and boot.restore_credentials is not None
    )
    doc = node_boot(
        cfg,
        "server",
        k3s_server_config(cfg, node, public_ip, token, boot),
        address=cfg.control_plane_ips[node],
        registry_password=boot.registry_password,
        extra_files=server_files(cfg, boot),
        start=not restoring,
    )
    # The server's certificate renewal (server-only): its files after the install script, its
    # timer enabled before the fence (it only checks expiry, and finds nothing before k3s).
    doc["write_files"] += [
        _file(CERT_RENEW_SCRIPT_PATH, cert_renew_script(), "0700"),
        _file(CERT_RENEW_SERVICE_PATH, CERT_RENEW_SERVICE, "0644"),
        _file(CERT_RENEW_TIMER_PATH, cert_renew_timer(node), "0644"),
    ]
    doc["runcmd"].insert(1, ["systemctl", "enable", "--now", f"{CERT_RENEW_UNIT}.timer"])
    if restoring and snapshot is not None and boot.restore_credentials is not None:
        doc["write_files"].append(
            _file(
                RESTORE_SCRIPT_PATH,
                restore_script(cfg, snapshot, boot.restore_credentials),
                "0700",
            )
        )
        # The restore script installs k3s (neither started nor enabled), restores etcd, and only
        # then starts k3s: it replaces the install step as the last runcmd item.
        doc["runcmd"][-1] = [RESTORE_SCRIPT_PATH]
    return doc


def k3s_agent_config(cfg: StackConfig, pool: str, token: str) -> dict[str, Any]:
    """`/etc/rancher/k3s/config.yaml` of every agent of worker pool `pool`.

    No node-ip here: Hetzner picks a worker's address, which its first boot writes into a
    config drop-in (NODE_IP_CONFIG_PATH). Nothing in it depends on the pool's size, so a count
    change never changes an existing worker's user_data.
    """
    spec = cfg.workers[pool]
    config: dict[str, Any] = {
        "token": token,
        "server": join_url(cfg),
        "node-label": [
            f"{key}={value}" for key, value in sorted(worker_node_labels(cfg, pool).items())
        ],
    }
    if spec.taints:
        config["node-taint"] = [taint.flag for taint in spec.taints]
    config.update(cloud_controller_flags(cfg, "agent"))
    return config


def agent_cloud_config(
    cfg: StackConfig, pool: str, token: str, registry_password: str | None = None
) -> dict[str, Any]:
    """The cloud-config of every agent of `pool`: static servers and autoscaled ones alike."""
    return node_boot(
        cfg,
        "agent",
        k3s_agent_config(cfg, pool, token),
        address=None,
        registry_password=registry_password,
        server_type=cfg.workers[pool].server_type,
    )


class _BlockDumper(yaml.CSafeDumper):
    """Multi-line file contents as literal blocks: scripts read (and diff) line by line.

    libyaml's emitter (PyYAML's C binding): user_data is rendered for every server at every
    preview and for the worst-case size check, and the pure-Python emitter was most of a run.
    """


def _str(dumper: yaml.CSafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    # The stubs leave represent_scalar's value untyped.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)  # pyright: ignore[reportUnknownMemberType]


_BlockDumper.add_representer(str, _str)


def _dump(doc: object) -> str:
    """A file written by cloud-init (k3s config, registries.yaml), as PyYAML's safe_dump."""
    return yaml.dump(doc, Dumper=yaml.CSafeDumper)


def _user_data(doc: Mapping[str, Any], header: str = "#cloud-config\n") -> str:
    body = yaml.dump(dict(doc), Dumper=_BlockDumper, sort_keys=False, width=1000)
    return header + body


def render_user_data(
    cfg: StackConfig, node: int, public_ip: str, token: str, boot: ServerBoot | None = None
) -> str:
    """A control-plane server's user_data as Hetzner receives it."""
    header = "#cloud-config\n"
    if boot is not None and boot.replacement_generation is not None:
        header += f"# sovereign replacement generation: {boot.replacement_generation}\n"
    return _user_data(cloud_config(cfg, node, public_ip, token, boot), header)


def render_agent_user_data(
    cfg: StackConfig, pool: str, token: str, registry_password: str | None = None
) -> str:
    """A worker's user_data as Hetzner (or the autoscaler) hands it to the server."""
    return _user_data(agent_cloud_config(cfg, pool, token, registry_password))
