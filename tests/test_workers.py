"""Worker pools: agents that join the stable endpoint, one component per pool, safe changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pytest
import yaml

from checks import rendered as checks
from checks.preflight import parse
from checks.workers import removal_warnings
from config.errors import SovereignConfigError
from render.cloudinit import K3S_CONFIG_PATH
from render.naming import CLOUD_CONTROLLER_LABEL_KEY
from tools.mockrun import FAKE_K3S_TOKEN, Registration, Run, evaluate, stack_config

SERVER = "hcloud:index/server:Server"
SERVER_NETWORK = "hcloud:index/serverNetwork:ServerNetwork"
SUBNET = "hcloud:index/networkSubnet:NetworkSubnet"
GROUP = "hcloud:index/placementGroup:PlacementGroup"
POOL = "sovereign:infra:WorkerPool"
PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"


def run_with(stack: str, overrides: dict[str, Any] | None = None, **kw: Any) -> Run:
    run = evaluate(stack, overrides, **kw)
    assert run.error is None, run.error
    return run


def in_pool(run: Run, pool: str) -> list[Registration]:
    """Every registration under the pool's component (its servers, networks, group)."""
    component = run.one(POOL, f"omantel-hel1-2-pool-{pool}")
    return [r for r in run.registrations if component in run.ancestors(r)]


def test_the_secondary_pool_is_agents_in_the_workers_subnet_and_a_spread_group(
    secondary: Run,
) -> None:
    workers = sorted(
        (s for s in secondary.of_type(SERVER) if s.parent.endswith("pool-general")),
        key=lambda s: s.name,
    )
    assert [s.inputs["name"] for s in workers] == [
        "omantel-hel1-2-general-1",
        "omantel-hel1-2-general-2",
    ]
    subnet = secondary.one(SUBNET, "omantel-hel1-2-workers-subnet")
    assert subnet.inputs["ipRange"] == "10.0.2.0/24"
    group = secondary.one(GROUP, "omantel-hel1-2-pool-general-spread")
    assert group.inputs["type"] == "spread"
    cp = [s for s in secondary.of_type(SERVER) if s not in workers]
    for server in workers:
        labels = server.inputs["labels"]
        assert labels["catalyst.openova.io/role"] == "worker"
        assert labels["openova.io/pool"] == "general"
        assert server.inputs["serverType"] == "cpx32"
        assert group.urn in server.dependencies
        # The agents join the servers: created after them, never rebuilt by a boot change.
        assert {s.urn for s in cp} <= set(server.dependencies)
        assert set(server.ignore_changes) == {"userData", "image", "sshKeys"}
        assert "userData" in server.secret_inputs
        (net,) = [n for n in secondary.of_type(SERVER_NETWORK) if n.name == f"{server.name}-net"]
        assert subnet.urn in net.dependencies
        assert "ip" not in net.inputs
        boot = yaml.safe_load(server.inputs["userData"])
        k3s = next(f for f in boot["write_files"] if f["path"] == K3S_CONFIG_PATH)
        assert yaml.safe_load(k3s["content"])["server"] == "https://10.0.1.253:6443"
    # The autoscaled pool's servers are the autoscaler's: the program names none.
    assert secondary.outputs["workers"] == {
        "burst": [],
        "general": ["omantel-hel1-2-general-1", "omantel-hel1-2-general-2"],
    }


def test_the_join_token_is_never_a_plain_input(secondary: Run) -> None:
    for reg in secondary.registrations:
        for path in ("userData",):
            if FAKE_K3S_TOKEN in str(reg.inputs.get(path, "")):
                assert path in reg.secret_inputs, reg.name


TWO_POOLS = {
    "workers": {
        "general": {"serverType": "cpx32", "count": 2},
        "edge": {"serverType": "cpx22", "count": 1, "labels": {"tier": "edge"}},
    }
}


def _snapshot(run: Run) -> dict[str, tuple[Any, ...]]:
    return {
        r.urn: (r.inputs, sorted(r.dependencies), r.ignore_changes, sorted(r.secret_inputs))
        for r in run.registrations
    }


def test_a_pool_count_change_touches_only_that_pool() -> None:
    before = run_with("secondary", TWO_POOLS)
    grown = {"workers": {**TWO_POOLS["workers"], "general": {"serverType": "cpx32", "count": 3}}}
    after = run_with("secondary", grown)
    old, new = _snapshot(before), _snapshot(after)
    general = {r.urn for r in in_pool(after, "general")}
    changed = {urn for urn in old.keys() & new.keys() if old[urn] != new[urn]}
    added, removed = new.keys() - old.keys(), old.keys() - new.keys()
    # Only the new server and its network attachment appear; nothing else changes at all.
    assert changed - {after.one(POOL, "omantel-hel1-2-pool-general").urn} == set()
    assert removed == set()
    assert {u.rsplit("::", 1)[1] for u in added} == {
        "omantel-hel1-2-pool-general-3",
        "omantel-hel1-2-pool-general-3-net",
    }
    assert added <= general
    # The pool's existing servers keep their exact user_data.
    for name in ("omantel-hel1-2-pool-general-1", "omantel-hel1-2-pool-general-2"):
        assert before.one(SERVER, name).inputs == after.one(SERVER, name).inputs


def test_a_shrinking_pool_says_on_every_preview_which_workers_go_undrained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_a, **_k: warned.append(message))
    worker = {
        "catalyst.openova.io/role": "worker",
        "openova.io/pool": "general",
        CLOUD_CONTROLLER_LABEL_KEY: "hetzner",
    }
    live = [
        {"name": f"omantel-hel1-2-general-{n}", "labels": worker, "deleteProtection": False}
        for n in (1, 2, 3)
    ]
    run_with("secondary", live_servers=live)
    undrained = [w for w in warned if "WITHOUT a drain" in w]
    assert len(undrained) == 1
    assert undrained[0].startswith("worker omantel-hel1-2-general-3 (pool general) is deleted")
    assert "kubectl drain omantel-hel1-2-general-3 --ignore-daemonsets" in undrained[0]


def test_removal_warnings_name_every_server_of_a_removed_pool() -> None:
    cfg = parse(stack_config("secondary"))
    live = {"omantel-hel1-2-general-1": "general", "omantel-hel1-2-gpu-1": "gpu"}
    assert [w.split(" ", 2)[1] for w in removal_warnings(cfg, live)] == ["omantel-hel1-2-gpu-1"]


def test_the_agent_plan_waits_for_the_server_plan(secondary: Run, primary: Run) -> None:
    server = secondary.one(PLAN, "slot-03-system-upgrade-server-plan")
    agent = secondary.one(PLAN, "slot-03-system-upgrade-agent-plan")
    spec = agent.inputs["spec"]
    # system-upgrade-controller's prepare step: the k3s-upgrade image waits for the named Plan.
    assert spec["prepare"] == {
        "image": "rancher/k3s-upgrade",
        "args": ["prepare", server.inputs["metadata"]["name"]],
    }
    assert spec["version"] == server.inputs["spec"]["version"]
    assert spec["nodeSelector"] == {
        "matchExpressions": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}
        ]
    }
    assert spec["concurrency"] == 1
    assert spec["drain"] == {"force": True, "deleteEmptydirData": True, "ignoreDaemonSets": True}
    assert server.urn in agent.dependencies
    assert [p.name for p in primary.of_type(PLAN)] == ["slot-03-system-upgrade-server-plan"]
    tuned = run_with("secondary", {"upgrades": {"agentConcurrency": 3, "agentDrain": False}})
    spec = tuned.one(PLAN, "slot-03-system-upgrade-agent-plan").inputs["spec"]
    assert spec["concurrency"] == 3
    assert "drain" not in spec


def refusal(overrides: dict[str, Any], stack: str = "secondary") -> str:
    raw = stack_config(stack)
    for key, value in overrides.items():
        raw[key] = value
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, stack)
    return str(err.value)


def test_malformed_pools_are_refused_in_one_error() -> None:
    message = refusal(
        {
            "workers": {
                "unknown": {"serverType": "cpx99"},
                "Bad_Name": {"serverType": "cpx32"},
                "labelled": {"serverType": "cpx32", "labels": {"openova.io/region": "x"}},
                "tainted": {"serverType": "cpx32", "taints": [{"key": "a", "effect": "Never"}]},
            }
        }
    )
    assert "sovereign:workers.unknown.serverType = 'cpx99': not a Hetzner server type" in message
    assert "sovereign:workers.Bad_Name" in message
    assert "sovereign:workers.labelled.labels.openova.io/region" in message
    assert "sovereign:workers.tainted.taints[0].effect = 'Never'" in message
    assert "Traceback" not in message


ASH = {
    "region": {
        "role": "secondary",
        "key": "ash",
        "location": "ash",
        "index": 1,
        "fqdn": "omantel.openova.io",
    },
    "controlPlane": {"serverType": "ccx23", "count": 3, "k3sVersion": "v1.33.13+k3s2"},
}


def test_pools_across_keys_are_refused_in_one_error() -> None:
    # Each pool is well-formed; what is wrong is where it is sold and how many share a group.
    message = refusal(
        {
            **ASH,
            "workers": {
                "general": {"serverType": "cpx32"},
                "big": {"serverType": "ccx13", "count": 11},
            },
        }
    )
    assert "(2 problem(s))" in message
    assert "sovereign:workers.general.serverType = 'cpx32'" in message
    assert "sovereign:workers.big.count = 11: at most 10 servers in the pool's spread" in message
    assert "sovereign:controlPlane.serverType" not in message


def test_a_group_of_eleven_is_accepted_without_a_placement_group() -> None:
    raw = {**stack_config("secondary")}
    raw["workers"] = {"big": {"serverType": "cpx32", "count": 11, "placementGroup": False}}
    assert parse(raw, "secondary").workers["big"].count == 11


@pytest.mark.parametrize(
    "workers",
    [
        {},
        {"general": {"serverType": "cpx32", "count": 2}},
        {
            "general": {"serverType": "cpx32", "labels": {"tier": "web"}},
            "idle": {"serverType": "cpx22", "count": 0},
        },
    ],
)
def test_every_rendered_node_selector_matches_a_node_in_every_pool_layout(
    workers: dict[str, Any],
) -> None:
    raw = {**stack_config("secondary"), "workers": workers}
    cfg = parse(raw, "secondary")
    assert checks.scheduling_problems(cfg, checks.render_releases(cfg)) == []


def test_a_node_selector_split_across_node_kinds_matches_no_node() -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    worker = checks.node_label_sets(cfg)[-1]
    assert {"catalyst.openova.io/role": "worker", "openova.io/pool": "general"}.items() <= (
        worker.items()
    )
    # Each label is on some node, but no node has both: the pods would stay Pending.
    split = {"catalyst.openova.io/role": "control-plane", "openova.io/pool": "general"}
    release = next(r for r in checks.render_releases(cfg) if r.spec.name == "cert-manager")
    patched = tuple(
        dataclasses.replace(
            o,
            doc={
                **o.doc,
                "spec": {
                    **o.doc["spec"],
                    "template": {
                        **o.doc["spec"]["template"],
                        "spec": {**o.doc["spec"]["template"]["spec"], "nodeSelector": split},
                    },
                },
            },
        )
        for o in release.objects
        if o.kind == "Deployment"
    )
    problems = checks.scheduling_problems(cfg, [checks.RenderedRelease(release.spec, patched)])
    assert len(problems) == len(patched) == 3
    assert problems[0].value == "catalyst.openova.io/role=control-plane,openova.io/pool=general"
    assert "labels one node carries together" in problems[0].allowed


def test_a_taint_no_pod_tolerates_is_refused_and_a_vcluster_toleration_accepts_it() -> None:
    taint = {"key": "dedicated", "value": "dmz", "effect": "NoSchedule"}
    pool = {"serverType": "cpx32", "taints": [taint]}
    message = refusal({"workers": {"general": pool}})
    assert "sovereign:workers.general.taints[0] = 'dedicated=dmz:NoSchedule'" in message
    assert "only pods that tolerate every taint, such as Cilium" in message
    raw = {**stack_config("secondary"), "workers": {"general": pool}}
    raw["vclusters"] = {
        **raw["vclusters"],
        "dmz": {**raw["vclusters"]["dmz"], "tolerations": [{"key": "dedicated", "value": "dmz"}]},
    }
    cfg = parse(raw, "secondary")
    dmz = next(r for r in checks.render_releases(cfg) if r.spec.name == "dmz-vcluster")
    pod = next(o for o in dmz.objects if o.kind == "StatefulSet").doc["spec"]["template"]["spec"]
    assert {"key": "dedicated", "operator": "Equal", "value": "dmz"} in pod["tolerations"]
    # A toleration of another value does not count; PreferNoSchedule never keeps pods away.
    raw["vclusters"]["dmz"]["tolerations"] = [{"key": "dedicated", "value": "rtz"}]
    with pytest.raises(SovereignConfigError):
        parse(raw, "secondary")
    soft = {**pool, "taints": [{**taint, "effect": "PreferNoSchedule"}]}
    assert parse({**stack_config("secondary"), "workers": {"general": soft}}, "secondary")
