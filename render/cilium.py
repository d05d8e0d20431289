"""Slot 01 values: Cilium in place of flannel, kube-proxy and the network policy controller."""

from __future__ import annotations

from typing import Any, Final

from config.models import StackConfig
from config.support import minor, minor_key
from render.cloudinit import api_endpoint, node_kinds, reachable_api
from render.metadata_fence import METADATA_POD_EXCEPTIONS, MetadataPodException
from render.naming import POOL_LABEL_KEY, prefix
from render.system_pods import cilium_resources

METADATA_CIDR: Final = "169.254.169.254/32"


class UnreachableApiError(ValueError):
    """Cilium pointed where some node has no API server."""


def upgrade_compatibility(cfg: StackConfig, first_line: str | None) -> str | None:
    """Cilium's `upgradeCompatibility` for a region first installed with line `first_line`.

    Cilium's upgrade guide: "To minimize datapath disruption during the upgrade, the
    ``upgradeCompatibility`` option should be set to the initial Cilium version which was
    installed in this cluster" (cilium/cilium Documentation/operations/upgrade.rst, "Step 2";
    checked 2026-12-04). The chart keeps the defaults of that first minor wherever a later one
    changed them (`semverCompare ">=1.x" (default "1.x" .Values.upgradeCompatibility)` in
    templates/cilium-configmap.yaml and _helpers.tpl of the vendored 1.19.6 chart). So it is set
    from the `up` that first moves the region past its first minor, and kept on every later one:
    dropping it again would move the ConfigMap to the newer defaults. A region still on its first
    line (every new one) needs none ("not required for new installations", values.yaml).
    """
    if first_line is None:
        return None
    wanted = minor(cfg.cilium.version)
    if wanted is None or minor_key(first_line) >= minor_key(wanted):
        return None
    return first_line


def cilium_values(cfg: StackConfig, first_line: str | None = None) -> dict[str, Any]:
    """Helm values of the Cilium chart (pure; generated from the same model as the k3s flags).

    `first_line` is the Cilium minor the region was first installed with (None: a new region).
    """
    endpoint = api_endpoint(cfg)
    for kind in node_kinds(cfg):
        if (endpoint.host, endpoint.port) not in reachable_api(cfg, kind):
            raise UnreachableApiError(
                f"k8sServiceHost {endpoint.host}:{endpoint.port}: no API server answers there "
                f"on a k3s {kind}; Cilium on those nodes would never start"
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
        "operator": {
            "replicas": 1 if cfg.control_plane.count == 1 else 2,
            **cilium_resources()["operator"],
        },
        "resources": cilium_resources()["resources"],
        "initResources": cilium_resources()["initResources"],
        # The chart leaves every system pod without requests (render/system_pods.py).
        "envoy": cilium_resources()["envoy"],
        "gatewayAPI": gateway_api_values(cfg),
        **(
            {"upgradeCompatibility": compatibility}
            if (compatibility := upgrade_compatibility(cfg, first_line)) is not None
            else {}
        ),
    }


# The GatewayClass the Cilium chart creates (values.yaml `gatewayAPI.gatewayClass`).
GATEWAY_CLASS: Final = "cilium"
INGRESS_GATEWAY: Final = "ingress"
INGRESS_GATEWAY_NAMESPACE: Final = "kube-system"


def gateway_api_values(cfg: StackConfig) -> dict[str, Any]:
    """`gatewayAPI` values of the Cilium chart (the same keys in 1.18 and 1.19).

    Host network mode (Cilium 1.16+, Documentation/network/servicemesh/gateway-api/
    host-network-mode.rst): envoy listens on every node on each Gateway listener's port. The
    ingress load balancer is the program's own Hetzner LB (declared, reviewed in the plan, its
    targets chosen by `loadBalancer.pool`), which targets host ports; the Hetzner CCM (slot 04)
    gives tenants' LoadBalancer Services their own LBs, not this one.
    """
    if not cfg.cilium.gateway_api.enabled:
        return {"enabled": False}
    host_network: dict[str, Any] = {"enabled": True}
    if cfg.load_balancer.enabled and cfg.load_balancer.pool is not None:
        # Envoy listens only on the pool the load balancer targets.
        host_network["nodes"] = {"matchLabels": {POOL_LABEL_KEY: cfg.load_balancer.pool}}
    return {
        "enabled": True,
        # "auto" decides by looking the GatewayClass CRD up while rendering; the CRDs are
        # applied before the release, so say so instead of depending on a lookup.
        "gatewayClass": {"create": "true"},
        "hostNetwork": host_network,
    }


def ingress_gateway(cfg: StackConfig) -> dict[str, Any] | None:
    """The Gateway whose host listeners the Hetzner load balancer forwards 80/443 to.

    Ports above 1023: envoy has no NET_BIND_SERVICE by default, so it could not bind 80/443 on
    the host. 443 is TLS passthrough: the Gateway needs no certificate to listen, and routes
    (TLSRoute) pick the backend by SNI.
    """
    lb = cfg.load_balancer
    if not (lb.enabled and cfg.cilium.gateway_api.enabled):
        return None
    everywhere = {"namespaces": {"from": "All"}}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": INGRESS_GATEWAY, "namespace": INGRESS_GATEWAY_NAMESPACE},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": lb.http_node_port,
                    "allowedRoutes": everywhere,
                },
                {
                    "name": "tls",
                    "protocol": "TLS",
                    "port": lb.https_node_port,
                    "tls": {"mode": "Passthrough"},
                    "allowedRoutes": {**everywhere, "kinds": [{"kind": "TLSRoute"}]},
                },
            ],
        },
    }


NAMESPACE_SELECTOR_KEY: Final = "k8s:io.kubernetes.pod.namespace"
METADATA_POLICY: Final = "deny-hetzner-metadata"


def _deny(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "endpointSelector": selector,
        # Only deny this one destination; do not switch every endpoint to default-deny.
        "enableDefaultDeny": {"egress": False, "ingress": False},
        "egressDeny": [{"toCIDR": [METADATA_CIDR]}],
    }


def metadata_deny_policies(
    exceptions: tuple[MetadataPodException, ...] = METADATA_POD_EXCEPTIONS,
) -> list[tuple[str, dict[str, Any]]]:
    """Pods may not read Hetzner's metadata service (user_data holds the k3s token), except the
    pods of `exceptions`: (CiliumClusterwideNetworkPolicy name, spec) pairs.

    A deny wins over every allow in Cilium, so an exception cannot be an allow rule: the denies
    select everything but the exempted pods. Label selectors only AND, so the complement of
    "namespace N and every exempted label" is the union of one deny outside N and, inside N, one
    deny per label key (NotIn the exempted values). All exceptions share one namespace.
    """
    if not exceptions:
        return [(METADATA_POLICY, _deny({}))]
    namespaces = {e.namespace for e in exceptions}
    if len(namespaces) != 1:
        raise ValueError(f"metadata exceptions in more than one namespace: {sorted(namespaces)}")
    (namespace,) = namespaces
    policies = [
        (
            METADATA_POLICY,
            _deny(
                {
                    "matchExpressions": [
                        {"key": NAMESPACE_SELECTOR_KEY, "operator": "NotIn", "values": [namespace]}
                    ]
                }
            ),
        )
    ]
    for key in sorted({k for e in exceptions for k in e.labels}):
        values = sorted({e.labels[key] for e in exceptions if key in e.labels})
        policies.append(
            (
                f"{METADATA_POLICY}-{namespace}-{len(policies)}",
                _deny(
                    {
                        "matchLabels": {NAMESPACE_SELECTOR_KEY: namespace},
                        "matchExpressions": [
                            {"key": f"k8s:{key}", "operator": "NotIn", "values": values}
                        ],
                    }
                ),
            )
        )
    return policies
