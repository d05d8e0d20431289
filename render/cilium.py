"""Slot 01 values: Cilium in place of flannel, kube-proxy and the network policy controller."""

from __future__ import annotations

from typing import Any, Final

from config.models import StackConfig
from render.cloudinit import LOCAL_LB_PORT, api_endpoint
from render.naming import prefix

CHART_REPO: Final = "https://helm.cilium.io"
METADATA_CIDR: Final = "169.254.169.254/32"
GATEWAY_API_RELEASES: Final = "https://github.com/kubernetes-sigs/gateway-api/releases/download"
GATEWAY_API_SOURCE: Final = "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api"


def gateway_api_crd_files(version: str) -> list[str]:
    """The standard channel plus TLSRoute, the one experimental CRD Cilium serves."""
    return [
        f"{GATEWAY_API_RELEASES}/{version}/standard-install.yaml",
        f"{GATEWAY_API_SOURCE}/{version}/config/crd/experimental/"
        "gateway.networking.k8s.io_tlsroutes.yaml",
    ]


class UnreachableApiError(ValueError):
    """Cilium pointed where some node has no API server."""


def cilium_values(cfg: StackConfig) -> dict[str, Any]:
    """Helm values of the Cilium chart (pure; generated from the same model as the k3s flags)."""
    endpoint = api_endpoint(cfg)
    if endpoint.host.startswith("127.") and endpoint.port != LOCAL_LB_PORT:
        raise UnreachableApiError(
            f"k8sServiceHost {endpoint.host}:{endpoint.port} exists only on servers; "
            f"workers have no API server there (use 127.0.0.1:{LOCAL_LB_PORT} or a private IP)"
        )
    return {
        # k3s runs without kube-proxy, so Cilium must serve Services itself and cannot ask the
        # (not yet existing) kubernetes Service for the API: it needs a direct address.
        "kubeProxyReplacement": True,
        "k8sServiceHost": endpoint.host,
        "k8sServicePort": endpoint.port,
        # The chart's default cluster-pool is 10.0.0.0/8, which overlaps the Hetzner network;
        # the per-node pod CIDRs k3s allocates from the region's pod CIDR are used instead.
        "ipam": {"mode": "kubernetes"},
        "cluster": {"name": prefix(cfg), "id": cfg.region.index + 1},
        "encryption": {"enabled": cfg.cilium.wireguard, "type": "wireguard"},
        "operator": {"replicas": 1 if cfg.control_plane.count == 1 else 2},
        "gatewayAPI": {"enabled": cfg.cilium.gateway_api.enabled},
    }


def metadata_deny_policy() -> dict[str, Any]:
    """Pods may not read Hetzner's metadata service: user_data there holds the k3s token."""
    return {
        "endpointSelector": {},
        # Only deny this one destination; do not switch every endpoint to default-deny.
        "enableDefaultDeny": {"egress": False, "ingress": False},
        "egressDeny": [{"toCIDR": [METADATA_CIDR]}],
    }
