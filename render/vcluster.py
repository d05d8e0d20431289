"""Slots 54/58/59 values: loft-sh vCluster 0.20.0, its namespace labels and NetworkPolicy (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from config.models import StackConfig, VCluster, VClusterName
from render.charts import Chart
from render.naming import REGION_LABEL_KEY, region_label
from render.pod_security import pss_labels

if TYPE_CHECKING:
    from pulumi_kubernetes.networking.v1 import (
        NetworkPolicyPeerArgsDict,
        NetworkPolicySpecArgsDict,
    )

CHART: Final = Chart(name="vcluster", version="0.20.0", repo="https://charts.loft.sh")
ROLE_LABEL: Final = "catalyst.openova.io/vcluster-role"
TOPOLOGY_LABEL: Final = "catalyst.openova.io/topology"
GATEWAY_NAMESPACE: Final = "gateway-system"

# Who may open connections into each vCluster's namespace (egress stays open).
INGRESS_FROM: Final[Mapping[VClusterName, tuple[str, ...]]] = {
    "mgmt": ("dmz",),
    "dmz": ("mgmt", "rtz", "kube-system", GATEWAY_NAMESPACE),
    "rtz": ("dmz",),
}
# The DMZ is the only zone that serves the internet.
WORLD_INGRESS: Final = frozenset({"dmz"})


def namespace_name(vcluster: VClusterName) -> str:
    return vcluster


def release_name(vcluster: VClusterName) -> str:
    return f"{vcluster}-vcluster"


def _image_tag(spec: VCluster) -> str:
    return f"{spec.image.tag}@{spec.image.digest}" if spec.image.digest else spec.image.tag


def vcluster_values(cfg: StackConfig, spec: VCluster) -> dict[str, Any]:
    """Chart values in the vcluster.yaml 0.20 shape (its schema refuses any other key)."""
    security: dict[str, Any] = {"podSecurityContext": dict(spec.security.pod_security_context)}
    if spec.security.container_security_context is not None:
        security["containerSecurityContext"] = dict(spec.security.container_security_context)
    distro: dict[str, Any] = {"enabled": True}
    if spec.security.distro_security_context:
        distro["securityContext"] = dict(spec.security.distro_security_context)
    return {
        "controlPlane": {
            "distro": {"k8s": distro},
            "backingStore": {"database": {"embedded": {"enabled": True}}},
            "statefulSet": {
                "image": {
                    "registry": spec.image.registry,
                    "repository": spec.image.repository,
                    "tag": _image_tag(spec),
                },
                "resources": {
                    "requests": {"cpu": "200m", "memory": "384Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                },
                "persistence": {
                    "volumeClaim": {"enabled": True, "size": "5Gi", "storageClass": "local-path"}
                },
                # Exactly the label k3s puts on the nodes (naming.region_label); anything else
                # leaves every vCluster pod Pending.
                "scheduling": {"nodeSelector": {REGION_LABEL_KEY: region_label(cfg)}},
                "security": security,
            },
            "service": {"spec": {"type": "ClusterIP"}},
        },
        # The host's service range, given rather than detected: vCluster 0.20 finds it by
        # parsing an API server error that Kubernetes 1.33+ no longer words that way, then falls
        # back to 10.96.0.0/12, which misses a region with index > 15 or a custom serviceCidr.
        # A set `serviceCIDR` skips the detection. sources: loft-sh/vcluster v0.20.0
        # pkg/util/servicecidr/servicecidr.go (FallbackCIDR); the chart's values schema
        # (render/charts/vcluster-0.20.0.values.schema.json, top-level `serviceCIDR`); checked
        # 2026-12-04.
        "serviceCIDR": cfg.service_cidr,
        # The chart reports usage to loft.sh unless told not to (values.yaml `telemetry.enabled:
        # true` at v0.20.0); a sovereign region sends nothing out unless its operator opts in.
        "telemetry": {"enabled": spec.telemetry},
        "sync": {
            "toHost": {
                "services": {"enabled": True},
                "persistentVolumeClaims": {"enabled": True},
                "configMaps": {"enabled": True},
                "secrets": {"enabled": True},
                "ingresses": {"enabled": False},
            }
        },
    }


def namespace_labels(vcluster: VClusterName, spec: VCluster) -> dict[str, str]:
    pss = spec.pod_security
    return {
        ROLE_LABEL: vcluster,
        TOPOLOGY_LABEL: "dod-a4",
        **pss_labels(pss.enforce, pss.audit, pss.warn, pss.version),
    }


def network_policy_spec(vcluster: VClusterName) -> NetworkPolicySpecArgsDict:
    """Default-deny ingress except from the same namespace and the allowed neighbours."""
    peers: list[NetworkPolicyPeerArgsDict] = [{"pod_selector": {}}]
    for ns in INGRESS_FROM[vcluster]:
        peers.append({"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": ns}}})
    if vcluster in WORLD_INGRESS:
        peers.append({"ip_block": {"cidr": "0.0.0.0/0"}})
    return {"pod_selector": {}, "policy_types": ["Ingress"], "ingress": [{"from_": peers}]}
