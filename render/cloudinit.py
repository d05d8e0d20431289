"""k3s server cloud-init, built as data and rendered to YAML (pure; no Pulumi resources).

The same `ApiEndpoint` model feeds the k3s flags (`--tls-san`, `--advertise-address`) and
Cilium's `k8sServiceHost`/`k8sServicePort`, so the two can never disagree.
"""

from __future__ import annotations

import ipaddress
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


def cloud_config(
    cfg: StackConfig, node: int, public_ip: str, token: str, registry_password: str | None = None
) -> dict[str, Any]:
    """The cloud-config document of one control-plane server."""
    files = [
        _file(K3S_CONFIG_PATH, yaml.safe_dump(k3s_server_config(cfg, node, public_ip, token))),
        _file(SSHD_DROP_IN_PATH, SSHD_HARDENING, "0644"),
        # Operators' keys go in through cloud-init, not as Hetzner SSH keys: Hetzner refuses the
        # same public key twice per project, which would break the second region's stack.
        {
            **_file("/root/.ssh/authorized_keys", "\n".join(cfg.access.ssh_public_keys) + "\n"),
            "append": True,
        },
    ]
    if cfg.registry_mirror.enabled:
        files.append(_file(REGISTRIES_PATH, yaml.safe_dump(registries(cfg, registry_password))))
    return {
        "write_files": files,
        "runcmd": [
            ["systemctl", "restart", "ssh"],
            ["curl", "-sfL", "--retry", "5", "-o", INSTALLER_PATH, K3S_INSTALL_URL],
            [
                "env",
                f"INSTALL_K3S_VERSION={cfg.control_plane.k3s_version}",
                "INSTALL_K3S_EXEC=server",
                "sh",
                INSTALLER_PATH,
            ],
        ],
    }


def render_user_data(
    cfg: StackConfig, node: int, public_ip: str, token: str, registry_password: str | None = None
) -> str:
    """user_data as Hetzner receives it."""
    doc = cloud_config(cfg, node, public_ip, token, registry_password)
    body = yaml.safe_dump(doc, sort_keys=False, width=1000)
    return "#cloud-config\n" + body
