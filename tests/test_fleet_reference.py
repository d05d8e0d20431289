"""Each secondary reads its primary's outputs (StackReference) and checks the fleet at preview.

Under mocks the reference is served by `RecordingMocks`: the referenced stack's committed
config turned into the outputs the primary exports, or explicit `references` outputs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime.settings import SETTINGS

from checks.fleet import FLEET_OUTPUTS, FleetError
from config.errors import SovereignConfigError
from tools.mockrun import Run, evaluate, stack_outputs
from tools.plan import main as plan_main
from tools.plan_fleet import generate_fleet

PRIMARY_OUTPUTS: dict[str, Any] = {
    "role": "primary",
    "regionKey": "fsn1",
    "regionIndex": 0,
    "podCidr": "10.42.0.0/16",
    "serviceCidr": "10.96.0.0/16",
    "vclusters": ["mgmt", "dmz"],
}


def hcloud(run: Run) -> list[str]:
    return [r.name for r in run.registrations if r.type.startswith("hcloud:")]


def test_a_consistent_secondary_reads_the_primary_and_deploys(secondary: Run) -> None:
    # Read twice: the fleet check, and the WireGuard rule's sources (its servers' addresses).
    assert secondary.stack_references == ["primary", "primary"]
    assert secondary.outputs["primaryRegionKey"] == "fsn1"
    # The region's first components wait for the checked reference.
    for component in ("sovereign:infra:RegionNetwork", "sovereign:infra:ControlPlane"):
        (dependency,) = secondary.one(component).dependencies
        assert dependency.endswith("$pulumi:pulumi:StackReference::omantel-hel1-2-primary")


def test_the_primary_references_no_stack(primary: Run) -> None:
    assert primary.stack_references == []
    assert "primaryRegionKey" not in primary.outputs
    assert primary.of_type("sovereign:fleet:PrimaryReference") == []


def test_the_mock_serves_what_the_primary_program_exports(primary: Run) -> None:
    served = stack_outputs("primary")
    assert set(served) == set(FLEET_OUTPUTS)
    assert {k: primary.outputs[k] for k in FLEET_OUTPUTS} == {
        **served,
        "vclusters": primary.outputs["vclusters"],
    }
    assert sorted(served["vclusters"]) == sorted(primary.outputs["vclusters"])


def test_overlapping_cidrs_fail_at_preview_naming_the_key_and_both_stacks() -> None:
    run = evaluate("secondary", {"network": {"podCidr": "10.42.0.0/16"}})
    assert isinstance(run.error, FleetError)
    assert str(run.error) == (
        "fleet check failed: stack 'secondary' and its primary 'primary' "
        "(sovereign:fleet.primaryStack) disagree (1 problem(s)):\n"
        "  - stacks primary and secondary: sovereign:network.podCidr 10.42.0.0/16 (primary) "
        "overlaps sovereign:network.podCidr 10.42.0.0/16 (secondary); regions route each "
        "other's pods and services, so every range must be distinct (set them, or give each "
        "region its own sovereign:region.index)"
    )
    # Nothing of the region is declared on a broken fleet.
    assert hcloud(run) == []


def test_a_second_primary_and_a_reused_key_are_named() -> None:
    as_secondary = {**PRIMARY_OUTPUTS, "role": "secondary", "regionKey": "hel1-2"}
    as_secondary.update(regionIndex=7, podCidr="10.49.0.0/16", serviceCidr="10.103.0.0/16")
    as_secondary["vclusters"] = ["dmz", "rtz"]
    run = evaluate("secondary", references={"primary": as_secondary})
    assert isinstance(run.error, FleetError)
    problems = run.error.problems
    assert problems[0] == (
        "exactly one primary region is required (sovereign:region.role = primary), found none"
    )
    assert problems[1] == (
        "region key 'hel1-2' is used by stacks primary, secondary (sovereign:region.key); "
        "each region needs its own"
    )
    assert hcloud(run) == []


def test_the_a4_count_is_checked_against_the_primarys_vclusters() -> None:
    run = evaluate("secondary", references={"primary": {**PRIMARY_OUTPUTS, "vclusters": ["dmz"]}})
    assert isinstance(run.error, FleetError)
    assert run.error.problems == (
        "stack primary (primary): no MGMT vCluster; DoD A4 runs MGMT + DMZ in every primary region",
        "vClusters 3/4 (MGMT 0/1, DMZ 2/2, RTZ 1/1): expected 1 MGMT + 2 DMZ + 1 RTZ",
    )


def test_a_primary_deployed_before_the_fleet_outputs_is_named() -> None:
    old = {k: v for k, v in PRIMARY_OUTPUTS.items() if k not in ("regionIndex", "podCidr")}
    run = evaluate("secondary", references={"primary": old})
    assert isinstance(run.error, FleetError)
    assert run.error.problems == (
        "stack primary exports no regionIndex, podCidr: run `pulumi up` on it first (the "
        "fleet outputs are checked by every secondary, here secondary)",
    )


def test_primary_stack_comes_from_config() -> None:
    ref = "acme/sovereign/primary"
    run = evaluate("secondary", {"fleet": {"primaryStack": ref}})
    assert run.error is None, run.error
    assert run.stack_references == [ref, ref]


def test_a_malformed_primary_stack_is_a_config_error() -> None:
    run = evaluate("secondary", {"fleet": {"primaryStack": "a/b/c/d"}})
    assert isinstance(run.error, SovereignConfigError)
    assert "  - sovereign:fleet.primaryStack = 'a/b/c/d': a stack name:" in str(run.error)


def test_an_unknown_primary_stack_fails_naming_it() -> None:
    run = evaluate("secondary", {"fleet": {"primaryStack": "nowhere"}})
    assert run.error is not None
    assert "StackReference 'nowhere': no stack 'nowhere'" in str(run.error)
    assert hcloud(run) == []


def test_a_failed_check_leaves_nothing_for_the_next_run() -> None:
    # The SDK keeps output tasks in a global set that `set_mocks` does not reset: left there,
    # the next run would await them and fail with this run's error.
    assert evaluate("secondary", {"network": {"podCidr": "10.42.0.0/16"}}).error is not None
    assert len(SETTINGS.outputs) == 0
    loop = asyncio.get_event_loop()
    assert [t for t in asyncio.all_tasks(loop) if not t.done()] == []


@pytest.mark.parametrize("jobs", ["1"])
def test_plan_all_reports_a_pair_problem_once_with_the_whole_fleet(
    tmp_path: Path, jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_fleet(tmp_path, 2)
    path = tmp_path / "Pulumi.region-01.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["sovereign:network"] = {"serviceCidr": "10.96.0.0/16"}
    path.write_text(yaml.safe_dump(doc))
    code = plan_main(["--all", "--dir", str(tmp_path), "--jobs", jobs])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("overlaps") == 1
    assert (
        "stacks primary and region-01: sovereign:network.serviceCidr 10.96.0.0/16 (primary) "
        "overlaps sovereign:network.serviceCidr 10.96.0.0/16 (region-01)"
    ) in err
