"""What the system pods ask the scheduler for, and who may reach them (pure).

None of the charts sets CPU or memory requests for these pods (Cilium 1.19's values leave
`resources`, `initResources`, `envoy.resources` and `operator.resources` empty; cert-manager
v1.21's leave every `resources` empty; system-upgrade-controller v0.20.1's Deployment has none),
so the scheduler saw them as free and the nodes' real room was overstated. Requests are the
program's sizing for one small region (a few hundred pods at most); no limits, on purpose: a
CPU-throttled or OOM-killed CNI agent or envoy takes the node's networking with it, and a
killed webhook blocks every Certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final


def requests(cpu: str, memory: str) -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": cpu, "memory": memory}}


CILIUM_AGENT: Final = requests("100m", "256Mi")
# The agent's init containers (config, mount-cgroup, mount-bpf-fs, ...): each runs for a moment.
CILIUM_INIT: Final = requests("10m", "32Mi")
CILIUM_ENVOY: Final = requests("50m", "64Mi")
CILIUM_OPERATOR: Final = requests("50m", "128Mi")
CERT_MANAGER: Final[Mapping[str, Mapping[str, Any]]] = {
    "controller": requests("10m", "64Mi"),
    "webhook": requests("10m", "32Mi"),
    "cainjector": requests("10m", "64Mi"),
    "startupapicheck": requests("10m", "32Mi"),
}
SYSTEM_UPGRADE_CONTROLLER: Final = requests("10m", "32Mi")


def cilium_resources() -> dict[str, Any]:
    """Cilium chart values: the agent, its init containers, envoy and the operator."""
    return {
        "resources": CILIUM_AGENT,
        "initResources": CILIUM_INIT,
        "envoy": {"resources": CILIUM_ENVOY},
        "operator": {"resources": CILIUM_OPERATOR},
    }


def cert_manager_resources() -> dict[str, Any]:
    """cert-manager chart values: the controller (top-level) and each other component."""
    return {
        "resources": CERT_MANAGER["controller"],
        **{
            part: {"resources": CERT_MANAGER[part]} for part in CERT_MANAGER if part != "controller"
        },
    }


# --- ingress of the system namespaces ---------------------------------------------------------

# What may be reached in each system namespace: the admission webhook the API server calls and
# the Prometheus metrics ports, from any source (the API server calls from a host, which a
# NetworkPolicy cannot name; kubelet probes come from the local host, which Cilium always
# admits). Ports as the rendered pods declare them (tests/test_system_pods.py reads them back):
# cert-manager's webhook serves on 10250, every component's metrics on 9402. The
# system-upgrade-controller serves neither, so nothing there is reachable.
SYSTEM_NAMESPACE_PORTS: Final[Mapping[str, Mapping[str, tuple[int, ...]]]] = {
    "cert-manager": {"webhook": (10250,), "metrics": (9402,)},
    "system-upgrade": {"webhook": (), "metrics": ()},
}
SYSTEM_POLICY_NAME: Final = "default-deny-ingress"


def system_ingress_policy(namespace: str) -> dict[str, Any]:
    ports = sorted({p for group in SYSTEM_NAMESPACE_PORTS[namespace].values() for p in group})
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Ingress"]}
    spec["ingress"] = (
        [{"ports": [{"port": port, "protocol": "TCP"} for port in ports]}] if ports else []
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": SYSTEM_POLICY_NAME, "namespace": namespace},
        "spec": spec,
    }
