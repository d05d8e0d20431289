"""Who may talk to whom: allow/deny tables evaluated on the policy objects the program declares.

The tables run `checks.network_policy` (the evaluator the preflight also uses) on the very
NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy objects the program
registers, plus any the charts render (issue 16 §5); no verdict is written by hand. Each
policy object decides at least one row, so none of them goes unexamined.
"""

from __future__ import annotations

from typing import Any

import pytest

from checks.network_policy import (
    KINDS,
    Endpoint,
    UnsupportedPolicyError,
    allowed,
    entity,
    load,
    pod,
)
from checks.preflight import parse as parse_config
from checks.rendered import render_releases
from tools.mockrun import Run, evaluate, stack_config
from tools.plan import declared_objects

DMZ = pod("dmz-web", "dmz", app="web")
DMZ_OTHER = pod("dmz-db", "dmz", app="db")
MGMT = pod("mgmt-app", "mgmt", app="console")
RTZ = pod("rtz-app", "rtz", app="api")
KUBE_DNS = pod("kube-dns", "kube-system", **{"k8s-app": "kube-dns"})
METRICS = pod("metrics-server", "kube-system", **{"k8s-app": "metrics-server"})
CERT_MANAGER = pod("cert-manager-webhook", "cert-manager", app="webhook")
UPGRADER = pod("system-upgrade-controller", "system-upgrade", app="system-upgrade-controller")
CSI = {"app.kubernetes.io/name": "hcloud-csi", "app.kubernetes.io/instance": "hcloud-csi"}
CSI_NODE = pod("hcloud-csi-node", "kube-system", **CSI, **{"app.kubernetes.io/component": "node"})
CSI_CONTROLLER = pod(
    "hcloud-csi-controller", "kube-system", **CSI, **{"app.kubernetes.io/component": "controller"}
)
NOT_CSI_NODE = pod(
    "other-node-agent",
    "kube-system",
    **{"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "node"},
)
API = entity("kube-apiserver")
GATEWAY = entity("ingress")
WORLD = entity("world", "203.0.113.50")
METADATA = entity("metadata", "169.254.169.254")

Row = tuple[Endpoint, Endpoint, int, str, bool]


def policy_docs(run: Run) -> list[dict[str, Any]]:
    """Every policy object the cluster would hold: registered by the program or in a chart."""
    assert run.error is None, run.error
    cfg = parse_config(stack_config(run.stack), run.stack)
    rendered = [dict(o.doc) for r in render_releases(cfg) for o in r.objects]
    docs = [doc for _, doc in declared_objects(run)] + rendered
    found = [doc for doc in docs if doc.get("kind") in KINDS]
    assert found, "no policy objects: every table below would judge an open cluster"
    return found


def failures(run: Run, table: list[Row], docs: list[dict[str, Any]] | None = None) -> list[str]:
    loaded = load(policy_docs(run) if docs is None else docs)
    return [
        f"{src.name} -> {dst.name}:{port}/{proto}: expected {'allow' if want else 'deny'}"
        for src, dst, port, proto, want in table
        if allowed(loaded, src, dst, port, proto) != want
    ]


# The platform's own namespaces admit only the ports their pods serve (render/system_pods.py),
# from pods whose egress is open (kube-system) and from the API server.
SYSTEM: list[Row] = [
    (API, CERT_MANAGER, 10250, "TCP", True),  # the webhook the API server calls
    (METRICS, CERT_MANAGER, 9402, "TCP", True),  # metrics
    (METRICS, CERT_MANAGER, 8080, "TCP", False),
    (API, UPGRADER, 443, "TCP", False),
    (METRICS, UPGRADER, 8080, "TCP", False),
    # The metadata service is denied to every pod, even where egress is otherwise open.
    (METRICS, METADATA, 80, "TCP", False),
    (CERT_MANAGER, METADATA, 80, "TCP", False),
    # Except the Hetzner CSI node plugin (kube-system and both its chart labels): each of the
    # kube-system denies is what keeps a pod with one of them only out (tests/test_csi.py has
    # the whole table).
    (CSI_NODE, METADATA, 80, "TCP", True),
    (CSI_CONTROLLER, METADATA, 80, "TCP", False),
    (NOT_CSI_NODE, METADATA, 80, "TCP", False),
    (METRICS, WORLD, 443, "TCP", True),
    # A zone admits the other zones and kube-system, not every namespace of the cluster.
    (CERT_MANAGER, DMZ, 8080, "TCP", False),
]

PRIMARY: list[Row] = [
    *SYSTEM,
    # DMZ -> MGMT only on the ports the program names (HTTPS, and 8443 for non-root pods).
    (DMZ, MGMT, 443, "TCP", True),
    (DMZ, MGMT, 8443, "TCP", True),
    (DMZ, MGMT, 22, "TCP", False),
    (DMZ, MGMT, 5432, "TCP", False),
    (DMZ, MGMT, 443, "UDP", False),
    (MGMT, DMZ, 8080, "TCP", True),
    # Inside a zone, anything.
    (DMZ, DMZ_OTHER, 5432, "TCP", True),
    (MGMT, MGMT, 9000, "TCP", True),
    # DNS, and only DNS, from kube-system.
    (DMZ, KUBE_DNS, 53, "UDP", True),
    (DMZ, KUBE_DNS, 53, "TCP", True),
    (MGMT, KUBE_DNS, 53, "UDP", True),
    (DMZ, KUBE_DNS, 9153, "TCP", False),
    (DMZ, METRICS, 443, "TCP", False),
    # The API server on its port only (not the kubelet beside it).
    (DMZ, API, 6443, "TCP", True),
    (MGMT, API, 6443, "TCP", True),
    (MGMT, API, 10250, "TCP", False),
    # Default-deny egress: nothing else leaves a zone, the metadata service least of all.
    (DMZ, WORLD, 443, "TCP", False),
    (MGMT, WORLD, 443, "TCP", False),
    (DMZ, METADATA, 80, "TCP", False),
    (MGMT, METADATA, 80, "TCP", False),
    # Ingress: the internet reaches the DMZ only; kube-system may reach the DMZ.
    (WORLD, DMZ, 443, "TCP", True),
    (WORLD, MGMT, 443, "TCP", False),
    (METRICS, DMZ, 8080, "TCP", True),
    (METRICS, MGMT, 8080, "TCP", False),
    # Without the Gateway, nothing admits Cilium's ingress identity.
    (GATEWAY, DMZ, 8080, "TCP", False),
    (GATEWAY, MGMT, 8080, "TCP", False),
]

SECONDARY: list[Row] = [
    *SYSTEM,
    (DMZ, RTZ, 8080, "TCP", True),
    (RTZ, DMZ, 8080, "TCP", True),
    (RTZ, KUBE_DNS, 53, "UDP", True),
    (RTZ, API, 6443, "TCP", True),
    (RTZ, WORLD, 443, "TCP", False),
    (DMZ, WORLD, 443, "TCP", False),
    (DMZ, METRICS, 443, "TCP", False),
    (RTZ, METADATA, 80, "TCP", False),
    (WORLD, RTZ, 443, "TCP", False),
    (WORLD, DMZ, 443, "TCP", True),
]

GATEWAY_ON: list[Row] = [
    # Issue 18 §8: with the Gateway on, its envoy reaches the DMZ, and only the DMZ.
    (GATEWAY, DMZ, 8080, "TCP", True),
    (GATEWAY, DMZ, 443, "TCP", True),
    (GATEWAY, MGMT, 8080, "TCP", False),
    # The rest of the table is unchanged by it.
    (DMZ, MGMT, 22, "TCP", False),
    (DMZ, WORLD, 443, "TCP", False),
    (WORLD, DMZ, 443, "TCP", True),
]


def test_primary_allow_deny_table(primary: Run) -> None:
    assert failures(primary, PRIMARY) == []


def test_secondary_allow_deny_table(secondary: Run) -> None:
    assert failures(secondary, SECONDARY) == []


@pytest.mark.parametrize(("stack", "table"), [("primary", PRIMARY), ("secondary", SECONDARY)])
def test_every_policy_object_decides_a_row_of_the_table(
    stack: str, table: list[Row], request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(stack)
    docs = policy_docs(run)
    kinds = {doc["kind"] for doc in docs}
    assert kinds == set(KINDS), kinds
    for doc in docs:
        without = [other for other in docs if other is not doc]
        name = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        assert failures(run, table, without), f"no row of the table depends on {name}"


def test_gateway_reaches_the_dmz_through_a_cilium_policy_for_its_identity() -> None:
    run = evaluate(
        "primary",
        {"cilium": {"gatewayApi": {"enabled": True}}, "loadBalancer": {"enabled": True}},
    )
    assert failures(run, GATEWAY_ON) == []
    gateway = [
        doc
        for _, doc in declared_objects(run)
        if doc["kind"] == "CiliumNetworkPolicy"
        and doc["metadata"]["name"] == "allow-gateway-ingress"
    ]
    assert [(d["metadata"]["namespace"], d["spec"]["ingress"]) for d in gateway] == [
        ("dmz", [{"fromEntities": ["ingress"]}])
    ]


def test_dmz_to_mgmt_ports_are_a_typed_input() -> None:
    run = evaluate("primary", {"vclusters": {"dmzToMgmtPorts": [9443]}})
    assert (
        failures(
            run,
            [
                (DMZ, MGMT, 9443, "TCP", True),
                (DMZ, MGMT, 443, "TCP", False),
                (DMZ, MGMT, 8443, "TCP", False),
            ],
        )
        == []
    )
    bad = evaluate("primary", {"vclusters": {"dmzToMgmtPorts": [0]}})
    assert "sovereign:vclusters.dmzToMgmtPorts = [0]: TCP ports, 1-65535" in str(bad.error)


# --- the evaluator itself, on hand-written objects -------------------------------------------


def test_a_deny_rule_wins_and_an_unselected_pod_is_open() -> None:
    objects = [
        {
            "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": "deny"},
            "spec": {
                "endpointSelector": {},
                "enableDefaultDeny": {"egress": False, "ingress": False},
                "egressDeny": [{"toCIDR": ["169.254.169.254/32"]}],
            },
        },
        {
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "all", "namespace": "dmz"},
            "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["all"]}]},
        },
    ]
    loaded = load(objects)
    assert not allowed(loaded, DMZ, METADATA, 80)
    assert allowed(loaded, DMZ, WORLD, 443)
    assert allowed(loaded, MGMT, WORLD, 443), "enableDefaultDeny false leaves MGMT open"
    assert not allowed(loaded, MGMT, METADATA, 80)


def test_named_ports_are_refused_not_guessed() -> None:
    doc = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "n", "namespace": "dmz"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "https"}]}]},
    }
    with pytest.raises(UnsupportedPolicyError):
        allowed(load([doc]), WORLD, DMZ, 443)


def test_labels_outside_matchlabels_are_refused() -> None:
    doc = {
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "n", "namespace": "dmz"},
        "spec": {"endpointSelector": {}, "egress": [{"toEndpoints": [{"k8s:app": "x"}]}]},
    }
    with pytest.raises(UnsupportedPolicyError, match="not a label selector"):
        allowed(load([doc]), DMZ, KUBE_DNS, 53)
