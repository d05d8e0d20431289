"""What fences each vCluster's namespace: its ResourceQuota and LimitRange (pure).

Every pod a tenant runs inside a vCluster is synced into that namespace, so these bound what one
tenant can take from the region. The defaults are the program's sizing, per role:

- The vCluster's own pods (the StatefulSet, and the CoreDNS pod the syncer creates, counted
  twice for a rollout's surge pod) take 0.24 CPU and 0.5 GiB of requests, 4 CPU and 1.33 GiB
  of limits, 3 pods, 3 services and one 5Gi claim; every default leaves tenants more than that
  (tests/test_tenants.py computes it from the rendered objects).
- A region runs two vClusters (primary: MGMT + DMZ, secondary: DMZ + RTZ) on control-plane
  servers as small as one cpx32 (4 vCPU, 8 GB). Their requests together (3 CPU, 6 GiB) leave
  the system pods their share of that server; limits may overcommit, requests may not.
- The DMZ is the edge (stateless proxies in front of the other zones): a third of the CPU and
  memory of MGMT and RTZ, which carry the platform and the workloads and their volumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from config.models import ContainerLimits, Quota, StackConfig, VCluster, VClusterName
from render.cloudinit import API_PORT
from render.vcluster import INGRESS_FROM, peer_ports

# Quota fields (as the config names them) -> the ResourceQuota `hard` key.
QUOTA_KEYS: Final[Mapping[str, str]] = {
    "requests_cpu": "requests.cpu",
    "requests_memory": "requests.memory",
    "limits_cpu": "limits.cpu",
    "limits_memory": "limits.memory",
    "requests_storage": "requests.storage",
    "pods": "pods",
    "persistent_volume_claims": "persistentvolumeclaims",
    "services": "services",
    "services_node_ports": "services.nodeports",
    "services_load_balancers": "services.loadbalancers",
}
_EDGE: Final[Mapping[str, str | int]] = {
    "requests_cpu": "1",
    "requests_memory": "2Gi",
    "limits_cpu": "8",
    "limits_memory": "6Gi",
    "requests_storage": "20Gi",
    "pods": 30,
    "persistent_volume_claims": 5,
    "services": 20,
    "services_node_ports": 0,
    "services_load_balancers": 0,
}
_CORE: Final[Mapping[str, str | int]] = {
    **_EDGE,
    "requests_cpu": "2",
    "requests_memory": "4Gi",
    "limits_cpu": "16",
    "limits_memory": "12Gi",
    "requests_storage": "100Gi",
    "pods": 60,
    "persistent_volume_claims": 20,
    "services": 40,
}
ROLE_QUOTAS: Final[Mapping[VClusterName, Mapping[str, str | int]]] = {
    "dmz": _EDGE,
    "mgmt": _CORE,
    "rtz": _CORE,
}
QUOTA_NAME: Final = "tenant-quota"
LIMIT_RANGE_NAME: Final = "tenant-limits"


def quota_hard(vcluster: VClusterName, quota: Quota) -> dict[str, str]:
    """The `hard` map: each key as configured, else the role's default."""
    chosen = {**ROLE_QUOTAS[vcluster], **quota.model_dump(exclude_none=True)}
    return {QUOTA_KEYS[field]: str(chosen[field]) for field in QUOTA_KEYS}


def resource_quota(vcluster: VClusterName, namespace: str, spec: VCluster) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": QUOTA_NAME, "namespace": namespace},
        "spec": {"hard": quota_hard(vcluster, spec.quota)},
    }


def limit_range_spec(limits: ContainerLimits) -> dict[str, Any]:
    return {
        "limits": [
            {
                "type": "Container",
                "defaultRequest": {
                    "cpu": limits.default_request_cpu,
                    "memory": limits.default_request_memory,
                },
                "default": {"cpu": limits.default_cpu, "memory": limits.default_memory},
                "max": {"cpu": limits.max_cpu, "memory": limits.max_memory},
            }
        ]
    }


def limit_range(namespace: str, spec: VCluster) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": LIMIT_RANGE_NAME, "namespace": namespace},
        "spec": limit_range_spec(spec.limits),
    }


# --- egress -------------------------------------------------------------------------------

EGRESS_POLICY_NAME: Final = "egress-allowlist"
GATEWAY_POLICY_NAME: Final = "allow-gateway-ingress"
CILIUM_POLICY_API: Final = "cilium.io/v2"
# Cilium's label for an endpoint's namespace (a selector without it stays in its own namespace).
NAMESPACE_LABEL: Final = "k8s:io.kubernetes.pod.namespace"
# k3s's CoreDNS: kube-system pods labelled k8s-app=kube-dns, serving DNS on 53 (UDP and TCP).
KUBE_DNS: Final[Mapping[str, str]] = {NAMESPACE_LABEL: "kube-system", "k8s:k8s-app": "kube-dns"}


def _tcp(ports: list[int]) -> list[dict[str, Any]]:
    return [{"ports": [{"port": str(port), "protocol": "TCP"} for port in ports]}]


def egress_peers(
    cfg: StackConfig, vcluster: VClusterName
) -> list[tuple[VClusterName, list[int] | None]]:
    """The zones this one may open connections to: those that admit it (INGRESS_FROM)."""
    return [
        (other, peer_ports(cfg, vcluster, other))
        for other, sources in INGRESS_FROM.items()
        if vcluster in sources
    ]


def egress_policy(cfg: StackConfig, vcluster: VClusterName, namespace: str) -> dict[str, Any]:
    """Default-deny egress for every pod of the zone, except DNS, the API server and its peers.

    A CiliumNetworkPolicy, because a Kubernetes NetworkPolicy cannot name the API server: it
    runs on the hosts, which Cilium identifies as the `kube-apiserver` entity, not by address.
    The syncer reaches it through the `kubernetes` Service, which Cilium translates to port
    6443 on a server before policy applies.
    """
    rules: list[dict[str, Any]] = [
        # The vCluster's own pods and its tenants' pods talk to each other and to the syncer.
        {"toEndpoints": [{"matchLabels": {NAMESPACE_LABEL: namespace}}]},
        {
            "toEndpoints": [{"matchLabels": dict(KUBE_DNS)}],
            "toPorts": [
                {"ports": [{"port": "53", "protocol": "UDP"}, {"port": "53", "protocol": "TCP"}]}
            ],
        },
        {"toEntities": ["kube-apiserver"], "toPorts": _tcp([API_PORT])},
    ]
    for other, ports in egress_peers(cfg, vcluster):
        rule: dict[str, Any] = {"toEndpoints": [{"matchLabels": {NAMESPACE_LABEL: other}}]}
        if ports is not None:
            rule["toPorts"] = _tcp(ports)
        rules.append(rule)
    return {
        "apiVersion": CILIUM_POLICY_API,
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": EGRESS_POLICY_NAME, "namespace": namespace},
        "spec": {"endpointSelector": {}, "egress": rules},
    }


def gateway_ingress_policy(
    cfg: StackConfig, vcluster: VClusterName, namespace: str
) -> dict[str, Any] | None:
    """With Cilium's Gateway on, admit its envoy to the DMZ (issue 18 §8).

    Gateway traffic reaches a backend from Cilium's reserved `ingress` identity, which neither a
    namespaceSelector nor the ipBlock 0.0.0.0/0 of the DMZ's NetworkPolicy matches, so it was
    dropped; only a CiliumNetworkPolicy can name the entity.
    """
    if vcluster != "dmz" or not cfg.cilium.gateway_api.enabled:
        return None
    return {
        "apiVersion": CILIUM_POLICY_API,
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": GATEWAY_POLICY_NAME, "namespace": namespace},
        "spec": {"endpointSelector": {}, "ingress": [{"fromEntities": ["ingress"]}]},
    }
