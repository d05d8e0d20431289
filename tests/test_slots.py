"""The slot table is the dependency graph the program registers, per role (DoD A4)."""

from __future__ import annotations

import re

import pytest

from render.slots import EVERY_REGION, SLOTS, Slot, active_slots, declaration_order
from tools.mockrun import Registration, Run, evaluate

RELEASE = "kubernetes:helm.sh/v3:Release"
# Slot 03 applies the system-upgrade-controller release's manifests, not a Helm chart.
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
# What a slot applies to the cluster: the resources whose waits are the slot's edges.
APPLIERS = (RELEASE, CONFIG_FILE, CONFIG_GROUP)
SLOT_NAME = re.compile(r"^slot-(\d{2})-")


def slot_of(run: Run, urn: str) -> int | None:
    reg = run.by_urn(urn)
    for node in (reg, *run.ancestors(reg)):
        match = SLOT_NAME.match(node.name)
        if match and node.type.startswith("sovereign:slot:"):
            return int(match.group(1))
    return None


def appliers(run: Run) -> list[Registration]:
    found = [r for r in run.registrations if r.type in APPLIERS]
    # Each kind is present (slot 03 is a ConfigFile and a ConfigGroup): a type renamed or
    # dropped would silently shrink every graph below.
    assert {r.type for r in found} == set(APPLIERS)
    return found


def registered_graph(run: Run) -> dict[int, set[int]]:
    """slot -> slots its Helm release (or manifests) explicitly wait for, from the engine."""
    graph: dict[int, set[int]] = {}
    for applier in appliers(run):
        own = slot_of(run, applier.urn)
        assert own is not None, applier.name
        waits = {slot_of(run, dep) for dep in applier.dependencies} - {None, own}
        # Each applier carries its slot's waits itself (explicit in state): one that waited
        # only through a sibling of its slot would be hidden by a union of the slot's edges.
        slot = graph.setdefault(own, waits)
        assert waits == slot, f"{applier.name} waits for slots {waits}, its slot for {slot}"
    return graph


def table_graph(run: Run) -> dict[int, set[int]]:
    from checks.preflight import parse as parse_config
    from tools.mockrun import stack_config

    cfg = parse_config(stack_config(run.stack), run.stack)
    return {slot.number: set(slot.after) for slot in active_slots(cfg)}


def test_primary_registers_exactly_the_table_graph(primary: Run) -> None:
    assert (
        registered_graph(primary)
        == table_graph(primary)
        == {
            1: set(),
            2: {1, 4},
            3: {1, 4},
            4: {1},
            5: {1, 4},
            54: {1, 2, 5},
            58: {1, 2, 5},
        }
    )


def test_secondary_registers_exactly_the_table_graph(secondary: Run) -> None:
    assert (
        registered_graph(secondary)
        == table_graph(secondary)
        == {
            1: set(),
            2: {1, 4},
            3: {1, 4},
            4: {1},
            5: {1, 4},
            # The committed secondary has an autoscaled pool (the primary none: no slot 06).
            6: {1, 4},
            54: {1, 2, 5},
            59: {1, 2, 5},
        }
    )


def test_primary_stack_has_mgmt_and_dmz_but_no_rtz(primary: Run) -> None:
    names = {r.inputs["name"] for r in primary.of_type(RELEASE)}
    assert names == {
        "cilium",
        "hcloud-ccm",
        "hcloud-csi",
        "cert-manager",
        "dmz-vcluster",
        "mgmt-vcluster",
    }


def test_secondary_stack_has_rtz_but_no_mgmt_vcluster(secondary: Run) -> None:
    names = {r.inputs["name"] for r in secondary.of_type(RELEASE)}
    assert names == {
        "cilium",
        "hcloud-ccm",
        "hcloud-csi",
        "cert-manager",
        "cluster-autoscaler",
        "dmz-vcluster",
        "rtz-vcluster",
    }


def test_each_role_runs_its_slots_in_table_order() -> None:
    # Registration order under the engine is concurrent; the order that matters is the
    # depends_on graph above. Declaration order follows the table.
    from checks.preflight import parse as parse_config
    from tools.mockrun import stack_config

    for stack, expected in (
        ("primary", [1, 4, 2, 3, 5, 54, 58]),
        ("secondary", [1, 4, 2, 3, 5, 6, 54, 59]),
    ):
        cfg = parse_config(stack_config(stack), stack)
        assert [slot.number for slot in active_slots(cfg)] == expected


def test_vclusters_do_not_wait_for_each_other(primary: Run) -> None:
    graph = registered_graph(primary)
    assert 54 not in graph[58]
    assert 58 not in graph[54]


def test_release_waits_are_on_the_release_not_only_the_component(primary: Run) -> None:
    # A component's own depends_on is not inherited by its children; the release must carry it.
    cert_manager = next(r for r in primary.of_type(RELEASE) if r.inputs["name"] == "cert-manager")
    cilium = next(r for r in primary.of_type(RELEASE) if r.inputs["name"] == "cilium")
    assert cilium.urn in cert_manager.dependencies


def test_table_is_a_graph_declared_after_every_wait() -> None:
    # Numbers are catalogue places: the table lists them in order, and a slot may wait for a
    # higher number (02 and 03 wait for the CCM, 04); declaration follows the waits.
    assert [s.number for s in SLOTS] == sorted(s.number for s in SLOTS)
    numbers = {s.number for s in SLOTS}
    seen: set[int] = set()
    for slot in declaration_order(SLOTS):
        assert set(slot.after) <= numbers
        assert set(slot.after) <= seen, f"slot {slot.number} declared before what it waits for"
        seen.add(slot.number)
    cycle = (
        Slot(number=1, release="a", after=(2,), roles=EVERY_REGION),
        Slot(number=2, release="b", after=(1,), roles=EVERY_REGION),
    )
    with pytest.raises(ValueError, match="cycle"):
        declaration_order(cycle)


def test_a_vcluster_can_be_switched_off_in_its_role() -> None:
    run = evaluate("primary", {"vclusters": {"dmz": {"enabled": False}}})
    assert run.error is None
    assert {r.inputs["name"] for r in run.of_type(RELEASE)} == {
        "cilium",
        "hcloud-ccm",
        "hcloud-csi",
        "cert-manager",
        "mgmt-vcluster",
    }
    assert run.outputs["vclusters"] == ["mgmt"]


@pytest.mark.parametrize(
    ("stack", "vcluster", "roles"),
    [
        ("primary", "rtz", "secondary"),
        ("secondary", "mgmt", "primary"),
    ],
)
def test_switching_a_vcluster_on_outside_its_role_cites_a4(
    stack: str, vcluster: str, roles: str
) -> None:
    run = evaluate(stack, {"vclusters": {vcluster: {"enabled": True}}})
    assert run.registrations == []
    message = str(run.error)
    assert f"sovereign:vclusters.{vcluster}.enabled = true: {vcluster.upper()}" in message
    assert f"runs only in {roles} regions and this is a {stack}" in message
    assert "DoD A4: primary = MGMT + DMZ, each secondary = DMZ + RTZ" in message


def test_a4_count_for_three_regions() -> None:
    runs = [
        evaluate("primary"),
        evaluate("secondary"),
        evaluate("secondary", {"region": {"key": "nbg1", "location": "nbg1", "index": 2}}),
    ]
    names = [v for run in runs for v in run.outputs["vclusters"]]
    assert (names.count("mgmt"), names.count("dmz"), names.count("rtz")) == (1, 3, 2)
    assert sum(run.outputs["vclusterCount"] for run in runs) == 6


def test_every_slot_of_the_table_has_exactly_one_builder() -> None:
    from components.slots import BUILDERS

    assert sorted(BUILDERS) == [slot.number for slot in SLOTS]


# The edges the engine receives. A component in `depends_on` is expanded by the SDK to the
# children it has when the dependent registers: a child added later would silently fall out of
# the gate. These read each registration's dependency URNs as sent, not the options passed.


def slot_resources(run: Run, number: int) -> set[str]:
    """What the engine can wait for in slot `number`: its custom and packaged resources."""
    return {
        r.urn for r in run.registrations if (r.custom or r.remote) and slot_of(run, r.urn) == number
    }


def waits_for(run: Run, urn: str) -> set[str]:
    """Every URN the resource waits for, through the recorded dependency edges."""
    edges = {r.urn: r.dependencies for r in run.registrations}
    seen: set[str] = set()
    todo = list(edges[urn])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(edges.get(dep, []))
    return seen


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_each_slots_releases_wait_for_every_resource_of_the_slots_before(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(stack)
    table = table_graph(run)
    gated = 0
    for release in appliers(run):
        own = slot_of(run, release.urn)
        assert own is not None, release.name
        waits = waits_for(run, release.urn)
        for before in table[own]:
            every = slot_resources(run, before)
            assert every, before
            missing = sorted(run.by_urn(urn).name for urn in every - waits)
            assert not missing, (
                f"{release.name} (slot {own}) does not wait for {missing} (slot {before})"
            )
            gated += 1
    # The CCM after Cilium; cert-manager, the upgrade controller's two manifests and the CSI
    # driver after Cilium and the CCM; each vCluster after Cilium, cert-manager and the CSI; the
    # autoscaler (where a pool opts in) after Cilium and the CCM.
    autoscaler = sum(1 for r in run.of_type(RELEASE) if r.inputs["name"] == "cluster-autoscaler")
    assert gated == 1 + 2 * 4 + 3 * len(active_vclusters_of(run)) + 2 * autoscaler


def active_vclusters_of(run: Run) -> list[str]:
    return [r.name for r in run.of_type(RELEASE) if "vcluster" in r.name]


def test_cilium_waits_arrive_before_cert_manager_as_edges(primary: Run) -> None:
    waits = waits_for(primary, primary.one(RELEASE, "slot-02-cert-manager-release").urn)
    names = {primary.by_urn(urn).name for urn in waits}
    assert {
        "slot-01-cilium-release",
        "slot-01-cilium-deny-metadata",
        "slot-01-cilium-nodes-ready",
    } <= names
