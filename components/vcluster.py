"""Slots 54/58/59: loft-sh vCluster 0.20.0 in its own Pod-Security-labelled namespace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.networking.v1 import NetworkPolicyPeerArgsDict, NetworkPolicySpecArgsDict

from components.config import StackConfig, VCluster, VClusterName
from components.helm import Chart, release
from components.naming import REGION_LABEL_KEY, region_label
from components.pod_security import pss_labels

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


@dataclass(frozen=True, slots=True, kw_only=True)
class VClusterArgs:
    cfg: StackConfig
    vcluster: VClusterName
    after: Sequence[pulumi.Resource] = ()


class VClusterSlot(pulumi.ComponentResource):
    """Namespace (PSS labels), its NetworkPolicy, then the vCluster release that waits for both."""

    TYPE: Final = "sovereign:slot:VCluster"

    def __init__(
        self, name: str, args: VClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, vcluster = args.cfg, args.vcluster
        spec = cfg.vclusters.spec(vcluster)
        ns_name = namespace_name(vcluster)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns_name, labels=namespace_labels(vcluster, spec)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ingress-allowlist", namespace=ns_name),
            spec=network_policy_spec(vcluster),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        self.release = release(
            f"{name}-release",
            release_name=release_name(vcluster),
            chart=CHART,
            namespace=ns_name,
            values=vcluster_values(cfg, spec),
            timeout_seconds=cfg.releases.timeout_seconds,
            parent=self,
            depends_on=[*args.after, self.namespace, self.network_policy],
        )
        self.register_outputs({"namespace": ns_name, "status": self.release.status})
