"""`./sovereign up|preview|drift --all`: the fleet runner, driven through a fake workspace.

The fake implements the runner's small engine interface (`Workspace.stack(name)` ->
`up/preview/preview_refresh(on_output)`), records starts and ends, and fails or reports
changes on demand; no Pulumi CLI is needed. The missing-CLI test uses the real
`AutomationWorkspace` with a PATH that holds no `pulumi`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tools.fleet import (
    REQUESTS_PER_REGION,
    FleetStack,
    OnOutput,
    Outcome,
    Workspace,
    default_concurrency,
    hetzner_requests,
    main,
)
from tools.plan_fleet import generate_fleet

ROOT = Path(__file__).resolve().parent.parent


class FakeWorkspace:
    def __init__(
        self,
        *,
        fail: Mapping[str, str] | None = None,
        changes: Mapping[str, Mapping[str, int]] | None = None,
        delay: float = 0.03,
    ) -> None:
        self.fail = dict(fail or {})
        self.changes = dict(changes or {})
        self.delay = delay
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, str]] = []
        self.active = 0
        self.peak = 0

    def stack(self, name: str) -> FleetStack:
        return FakeStack(self, name)

    def started(self, op: str | None = None) -> list[str]:
        return [s for kind, o, s in self.events if kind == "start" and op in (None, o)]


class FakeStack:
    def __init__(self, ws: FakeWorkspace, name: str) -> None:
        self.ws = ws
        self.name = name

    def _run(self, op: str, on_output: OnOutput) -> Outcome:
        ws = self.ws
        with ws.lock:
            ws.active += 1
            ws.peak = max(ws.peak, ws.active)
            ws.events.append(("start", op, self.name))
        try:
            on_output(f"{op} of {self.name}: Updating (fake)\n")
            time.sleep(ws.delay)
            if self.name in ws.fail:
                raise RuntimeError(ws.fail[self.name])
            return Outcome(ws.changes.get(self.name, {"same": 27}))
        finally:
            with ws.lock:
                ws.active -= 1
                ws.events.append(("end", op, self.name))

    def up(self, on_output: OnOutput) -> Outcome:
        return self._run("up", on_output)

    def preview(self, on_output: OnOutput) -> Outcome:
        return self._run("preview", on_output)

    def preview_refresh(self, on_output: OnOutput) -> Outcome:
        return self._run("drift", on_output)


def run(
    directory: Path, *args: str, ws: FakeWorkspace | None = None
) -> tuple[int, str, str, FakeWorkspace]:
    fake = ws or FakeWorkspace()

    def factory(_dir: Path, _secrets: str) -> Workspace:
        return fake

    out, err = io.StringIO(), io.StringIO()
    code = main(
        [*args, "--dir", str(directory), "--log-dir", str(directory / "logs")],
        out=out,
        err=err,
        workspace=factory,
    )
    return code, out.getvalue(), err.getvalue(), fake


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    generate_fleet(tmp_path, 4)  # primary, region-01 .. region-03
    return tmp_path


def row(out: str, stack: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(stack + " "))
    return line.split()


def test_up_all_runs_the_primary_alone_before_any_secondary(fleet: Path) -> None:
    code, _, err, ws = run(fleet, "up", "--all", "--concurrency", "3")
    assert code == 0, err
    primary_end = ws.events.index(("end", "up", "primary"))
    first_secondary = min(
        i for i, (kind, _, s) in enumerate(ws.events) if kind == "start" and s != "primary"
    )
    assert ws.events[0] == ("start", "up", "primary")
    assert primary_end < first_secondary
    assert sorted(ws.started()) == ["primary", "region-01", "region-02", "region-03"]


def test_secondaries_never_exceed_the_concurrency_bound_and_reach_it(fleet: Path) -> None:
    code, _, err, ws = run(fleet, "up", "--all", "--concurrency", "2", ws=FakeWorkspace(delay=0.08))
    assert code == 0, err
    assert ws.peak == 2


def test_a_failed_secondary_neither_stops_nor_alters_the_others(fleet: Path) -> None:
    ws = FakeWorkspace(
        fail={"region-02": "error: update failed\nerror: 1 resource failed to create"},
        changes={"region-03": {"create": 12, "same": 0}},
    )
    code, out, _, _ = run(fleet, "up", "--all", "--concurrency", "2", ws=ws)
    assert code == 1
    assert sorted(ws.started()) == ["primary", "region-01", "region-02", "region-03"]
    assert row(out, "region-02")[1] == "failed"
    assert "error: 1 resource failed to create" in out
    for stack in ("primary", "region-01", "region-03"):
        assert row(out, stack)[1] == "ok", out
    assert row(out, "region-03")[3:5] == ["create", "12"]
    assert "run it again to resume" in out


def test_each_stack_logs_to_its_own_file_and_prefixed_lines(fleet: Path) -> None:
    ws = FakeWorkspace(
        fail={
            "region-03": "error: the stack is currently locked by 1 lock(s)",
            "region-02": "warning: Attempting to deploy or update resources with 1 pending "
            "operations from previous deployment.\nerror: update failed",
        }
    )
    _, out, _, _ = run(fleet, "up", "--all", ws=ws)
    logs = fleet / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "primary.log",
        "region-01.log",
        "region-02.log",
        "region-03.log",
    ]
    assert (logs / "region-01.log").read_text() == "up of region-01: Updating (fake)\n"
    assert "[region-01] up of region-01: Updating (fake)" in out.splitlines()
    assert "currently locked" in (logs / "region-03.log").read_text()
    # A lock left by an interrupted run: the row says how to clear it.
    assert "pulumi cancel --stack region-03" in out
    # An update cut off mid-create: refresh, then run again.
    assert "then pulumi refresh --stack region-02 (--clear-pending-creates" in out


def test_a_failed_primary_skips_the_secondaries_of_an_up(fleet: Path) -> None:
    ws = FakeWorkspace(fail={"primary": "error: boom"})
    code, out, _, _ = run(fleet, "up", "--all", ws=ws)
    assert code == 1
    assert ws.started() == ["primary"]
    assert row(out, "region-03")[1] == "skipped"
    assert "primary primary failed; secondaries read its outputs" in out


def test_keep_going_and_preview_run_the_secondaries_after_a_failed_primary(fleet: Path) -> None:
    for args in (("up", "--all", "--keep-going"), ("preview", "--all")):
        ws = FakeWorkspace(fail={"primary": "error: boom"})
        code, _, _, _ = run(fleet, *args, ws=ws)
        assert code == 1
        assert len(ws.started()) == 4, args


def test_summary_table_has_stack_result_duration_and_resources_changed(fleet: Path) -> None:
    ws = FakeWorkspace(changes={"primary": {"create": 3, "update": 1, "same": 20}})
    code, out, _, _ = run(fleet, "up", "--stacks", "primary,region-01", ws=ws)
    assert code == 0
    table = out[out.index("stack ") :].splitlines()
    assert table[0].split() == ["stack", "result", "duration", "resources", "changed", "detail"]
    assert row(out, "primary") == ["primary", "ok", "0s", "create", "3,", "update", "1"]
    # Up to date: the re-run of a finished fleet is a no-op row.
    assert row(out, "region-01") == ["region-01", "ok", "0s", "none"]


def test_stacks_selects_a_subset_and_unknown_names_are_refused(fleet: Path) -> None:
    code, _, _, ws = run(fleet, "preview", "--stacks", "region-03,region-01")
    assert code == 0
    assert sorted(ws.started()) == ["region-01", "region-03"]
    code, _, err, ws = run(fleet, "up", "--stacks", "region-01,nowhere")
    assert code == 2
    assert "no such stack(s) nowhere: stacks are primary region-01" in err
    assert ws.events == []


def test_an_inconsistent_fleet_starts_nothing(fleet: Path) -> None:
    path = fleet / "Pulumi.region-02.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["sovereign:region"]["index"] = 1
    path.write_text(yaml.safe_dump(doc))
    code, _, err, ws = run(fleet, "up", "--all")
    assert code == 2
    assert ws.events == []
    assert "nothing was started" in err
    assert "region index '1' is used by stacks region-01, region-02 (sovereign:region.index)" in err


def test_drift_exits_3_when_a_stack_differs_from_the_cloud(fleet: Path) -> None:
    ws = FakeWorkspace(changes={"region-02": {"update": 1, "same": 26}})
    code, out, _, _ = run(fleet, "drift", "--all", ws=ws)
    assert code == 3
    assert ws.started("drift")
    assert row(out, "region-02")[3:5] == ["update", "1"]


def test_without_the_pulumi_cli_it_says_so_without_a_traceback(fleet: Path) -> None:
    empty = fleet / "no-cli"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.fleet", "up", "--all", "--dir", str(fleet)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("sovereign up: the Pulumi CLI (`pulumi`) is not on PATH")
    assert "https://www.pulumi.com/docs/install/" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (fleet / ".fleet-logs").exists()


def test_requests_per_region_is_the_secondary_plans_hetzner_requests() -> None:
    # Moves with the program: regenerate the goldens, then update REQUESTS_PER_REGION and the
    # derivation in tools/fleet.py and the README.
    plan = json.loads((ROOT / "tests" / "golden" / "secondary.json").read_text())
    types = [r["type"] for r in plan["resources"] if r["custom"]]
    assert hetzner_requests(types) == REQUESTS_PER_REGION == 120
    # 3 servers x 22 + 3 primary IPs x 5 + network 2 + subnet 4 + firewall 4 + key 2 + group 2
    # + the API load balancer 5, its network 4, 3 targets x 4 and its service 4
    assert hetzner_requests(["hcloud:index/server:Server"]) == 22


def test_default_concurrency_keeps_half_the_hourly_limit_for_everything_else() -> None:
    # floor(3600 * 0.5 / (120 requests * 6 regions an hour per slot)) = 2
    assert default_concurrency() == 2
    assert default_concurrency(REQUESTS_PER_REGION * 2) == 1
    assert default_concurrency(30) == 10


def test_ci_matrix_lists_every_stack_file_primary_first(tmp_path: Path) -> None:
    from tools.ci_matrix import main as ci_main
    from tools.ci_matrix import matrix

    generate_fleet(tmp_path, 3)
    assert matrix(tmp_path) == {
        "stacks": ["primary", "region-01", "region-02"],
        "primary": "primary",
        "secondaries": ["region-01", "region-02"],
    }
    assert matrix(ROOT)["stacks"] == ["primary", "secondary"]
    (tmp_path / "Pulumi.a$(id).yaml").write_text("config: {}\n")
    assert ci_main([str(tmp_path)]) == 1
