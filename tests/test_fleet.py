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
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tests.helpers import set_cluster_tokens
from tools.fleet import (
    REQUESTS_PER_REGION,
    AutomationWorkspace,
    Console,
    Control,
    FleetStack,
    Interrupts,
    OfflinePlan,
    OnOutput,
    Outcome,
    StackMissingError,
    Workspace,
    default_concurrency,
    hetzner_requests,
    main,
    offline_plan,
)
from tools.plan_fleet import generate_fleet

ROOT = Path(__file__).resolve().parent.parent


class FakeWorkspace:
    """`missing`: stacks the backend does not have; `interrupt_at`: the stack whose start
    raises SIGINT in this process, as a Ctrl-C would. An interrupted operation ends the way the
    CLI's does: promptly, with an error."""

    def __init__(
        self,
        *,
        fail: Mapping[str, str] | None = None,
        changes: Mapping[str, Mapping[str, int]] | None = None,
        delay: float = 0.03,
        missing: set[str] | None = None,
        interrupt_at: str | None = None,
    ) -> None:
        self.fail = dict(fail or {})
        self.changes = dict(changes or {})
        self.delay = delay
        self.missing = set(missing or ())
        self.interrupt_at = interrupt_at
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, str]] = []
        self.created: list[str] = []
        self.interrupts: list[bool] = []
        self.cancel = threading.Event()
        self.active = 0
        self.peak = 0

    def stack(self, name: str, *, create: bool) -> FleetStack:
        if name in self.missing:
            if not create:
                raise StackMissingError(name)
            with self.lock:
                self.created.append(name)
                self.missing.discard(name)
        return FakeStack(self, name)

    def interrupt(self, *, again: bool) -> None:
        self.interrupts.append(again)
        self.cancel.set()

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
            if self.name == ws.interrupt_at:
                signal.raise_signal(signal.SIGINT)
                if not ws.cancel.wait(5):
                    raise RuntimeError("the fleet never passed the interrupt on")
            if ws.cancel.wait(ws.delay):
                raise RuntimeError(f"error: {op} canceled")
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


def no_plan(stack: str, _directory: Path, _log_dir: Path) -> tuple[int, str]:
    raise AssertionError(f"no offline plan expected, asked for {stack}")


def run(
    directory: Path, *args: str, ws: FakeWorkspace | None = None, plan: OfflinePlan = no_plan
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
        plan=plan,
        environ={"HCLOUD_TOKEN": "t"},
    )
    return code, out.getvalue(), err.getvalue(), fake


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A person's run: a passphrase, and stack files without a salt yet (tests/test_ci.py has CI's).
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse battery staple")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    generate_fleet(tmp_path, 4)  # primary, region-01 .. region-03
    set_cluster_tokens(tmp_path)
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
    assert (
        "not started: the primary region's stack failed and a secondary reads its outputs "
        "(--keep-going starts them anyway)" in out
    )
    assert "primary primary" not in out


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


def test_without_the_pulumi_cli_a_failed_install_says_so_without_a_traceback(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools import pulumi_cli
    from tools.fleet import AutomationWorkspace

    def offline(version: str, root: Path) -> None:
        raise OSError("curl: (6) Could not resolve host")

    monkeypatch.setenv("PATH", str(fleet / "no-cli"))
    monkeypatch.setattr(pulumi_cli, "INSTALL_DIR", str(fleet / "cli"))
    monkeypatch.setattr(pulumi_cli, "install", offline)
    err = io.StringIO()
    code = main(
        ["up", "--all", "--dir", str(fleet)],
        out=io.StringIO(),
        err=err,
        workspace=AutomationWorkspace,
        environ={"HCLOUD_TOKEN": "t"},
    )
    assert code == 2
    assert err.getvalue().startswith("sovereign up: could not install the Pulumi CLI "), (
        err.getvalue()
    )
    assert "Could not resolve host" in err.getvalue()
    assert "https://www.pulumi.com/docs/install/" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not (fleet / ".fleet-logs").exists()


def test_requests_per_region_is_the_secondary_plans_hetzner_requests() -> None:
    # Moves with the program: regenerate the goldens, then update REQUESTS_PER_REGION and the
    # derivation in tools/fleet.py and the README.
    plan = json.loads((ROOT / "tests" / "golden" / "secondary.json").read_text())
    types = [r["type"] for r in plan["resources"] if r["custom"]]
    assert hetzner_requests(types) == REQUESTS_PER_REGION == 187
    # 3 servers x 22 + 3 primary IPs x 5 + network 2 + subnet 4 + firewall 4 + its attachment 5
    # + key 2 + group 2
    # + the API load balancer 5, its network 4, 3 targets x 4 and its service 4
    # + the worker pool: 2 servers x 22, subnet 4, group 2, 2 network attachments x 4
    # + the region's record (an empty placement group) 2
    # + the autoscaled pool's group 2 (its servers are the autoscaler's)
    assert hetzner_requests(["hcloud:index/server:Server"]) == 22


def test_default_concurrency_keeps_half_the_hourly_limit_for_everything_else() -> None:
    # floor(3600 * 0.5 / (187 requests * 6 regions an hour per slot)) = 1
    assert default_concurrency() == 1
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


# Stacks the backend does not have: only `up` creates them


def test_preview_all_shows_a_new_stacks_offline_plan_and_creates_nothing(fleet: Path) -> None:
    ws = FakeWorkspace(missing={"region-02"})
    code, out, err, _ = run(fleet, "preview", "--all", ws=ws, plan=offline_plan)
    assert code == 0, err
    assert ws.created == []
    assert "region-02" not in ws.started()
    assert sorted(ws.started()) == ["primary", "region-01", "region-03"]
    assert (
        "[region-02] preview: stack region-02 is not in the backend yet: nothing was created; "
        "the first `up` creates it (in CI: on merge)."
    ) in out
    # The real `./sovereign plan` of that stack, from the stack file in the fleet directory.
    assert "[region-02] sovereign plan: stack region-02 (secondary, region " in out
    assert "[region-02] Deploy waves (a wave runs in parallel" in out
    assert (fleet / "logs" / "region-02.plan.json").is_file()
    assert row(out, "region-02")[1] == "new"


def test_drift_all_names_a_stack_not_in_the_backend_and_exits_non_zero(fleet: Path) -> None:
    ws = FakeWorkspace(missing={"region-01", "region-03"})
    code, out, _, _ = run(fleet, "drift", "--all", ws=ws)
    assert code == 1
    assert ws.created == []
    assert sorted(ws.started()) == ["primary", "region-02"]
    assert row(out, "region-01")[1] == "missing"
    assert (
        "drift: not in the backend: region-01, region-03 (only up creates a stack: "
        "./sovereign up --stacks region-01,region-03)"
    ) in out


def test_only_up_creates_a_stack_the_backend_does_not_have(fleet: Path) -> None:
    ws = FakeWorkspace(missing={"region-03"})
    code, out, err, _ = run(fleet, "up", "--all", ws=ws)
    assert code == 0, err
    assert ws.created == ["region-03"]
    assert row(out, "region-03")[1] == "ok"


# Ctrl-C


def test_an_interrupt_during_the_primary_starts_no_other_stack(fleet: Path) -> None:
    ws = FakeWorkspace(interrupt_at="primary", delay=0.2)
    code, out, _, _ = run(fleet, "up", "--all", "--concurrency", "3", ws=ws)
    assert code == 130
    assert ws.started() == ["primary"]
    # Passed on once to the running operation, which Pulumi cancels cleanly.
    assert ws.interrupts == [False]
    assert "interrupted: starting no further stack; cancelling primary" in out
    assert row(out, "primary")[1] == "cancelled"
    assert row(out, "region-01")[1:3] == ["not", "started"]
    assert out.rstrip().endswith(
        "interrupted: finished: none; cancelled: primary; "
        "never started: region-01, region-02, region-03"
    )


def test_an_interrupt_during_a_secondary_lets_it_cancel_and_starts_no_more(fleet: Path) -> None:
    ws = FakeWorkspace(interrupt_at="region-01", delay=0.2)
    code, out, _, _ = run(fleet, "preview", "--all", "--concurrency", "1", ws=ws)
    assert code == 130
    assert ws.started() == ["primary", "region-01"]
    assert ws.interrupts == [False]
    assert out.rstrip().endswith(
        "interrupted: finished: primary; cancelled: region-01; never started: region-02, region-03"
    )


def test_a_second_interrupt_exits_at_once_naming_what_may_be_left_locked() -> None:
    ws = FakeWorkspace()
    control = Control()
    out = io.StringIO()
    exits: list[int] = []
    handler = Interrupts(ws, control, Console(out), exit_now=exits.append)
    assert control.begin("primary")
    assert control.begin("region-01")
    handler(signal.SIGINT, None)
    assert control.stop.is_set()
    assert exits == []
    assert not control.begin("region-02")  # nothing new starts
    handler(signal.SIGINT, None)
    assert exits == [130]
    assert ws.interrupts == [False, True]
    assert (
        "These stacks may be left locked, with pending operations: primary, region-01. Once no "
        "update of theirs runs: pulumi cancel --stack primary; pulumi cancel --stack region-01"
    ) in out.getvalue()


# The real AutomationWorkspace, over a stand-in `pulumi` on PATH (the CLI cannot run here)

FAKE_CLI = """#!/usr/bin/env bash
# Stands in for the Pulumi CLI: records each call and the session it runs in, answers
# `version`, refuses to select a stack other than `primary` with the CLI's own message, and
# runs a long preview that ends the way the CLI's does on Ctrl-C.
log=$FAKE_PULUMI_LOG
[ "${1:-}" = --non-interactive ] && shift
echo "$* | session $(cut -d' ' -f6 /proc/$$/stat)" >> "$log"
case "${1:-} ${2:-}" in
  "version "*) echo v3.272.0 ;;
  "stack select")
    [ "$4" = primary ] || { echo "error: no stack named '$4' found" >&2; exit 255; } ;;
  "preview "*)
    # The preview itself is Python, which, like the Go CLI, installs its SIGINT handler even when
    # it inherits SIGINT ignored (a fleet started as a background job of a non-interactive
    # shell); bash cannot trap a signal ignored on entry (bash(1), SIGNALS).
    exec "$FAKE_PYTHON" -c '
import signal, sys, time
def cancel(*_):
    with open(sys.argv[1], "a") as log:
        log.write("SIGINT\\n")
    print("error: preview canceled", file=sys.stderr, flush=True)
    sys.exit(255)
signal.signal(signal.SIGINT, cancel)
print("Previewing update (primary)", flush=True)
time.sleep(60)
' "$log" ;;
esac
"""


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "pulumi"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    log = tmp_path / "pulumi-calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("FAKE_PYTHON", sys.executable)
    return log


def test_the_automation_workspace_selects_and_reports_a_missing_stack(
    fleet: Path, fake_cli: Path
) -> None:
    ws = AutomationWorkspace(fleet)
    with pytest.raises(StackMissingError) as missing:
        ws.stack("region-02", create=False)
    assert missing.value.stack == "region-02"
    calls = fake_cli.read_text()
    assert "stack select --stack region-02" in calls
    assert "stack init" not in calls


def test_the_automation_workspace_passes_one_sigint_to_a_cli_in_its_own_session(
    fleet: Path, fake_cli: Path
) -> None:
    ws = AutomationWorkspace(fleet)
    stack = ws.stack("primary", create=False)
    lines: list[str] = []
    errors: list[BaseException] = []

    def preview() -> None:
        try:
            stack.preview(lines.append)
        except Exception as err:  # the CLI's non-zero exit, as the SDK raises it
            errors.append(err)

    worker = threading.Thread(target=preview)
    worker.start()
    # Generous bounds: a loaded CI machine starts the CLI late. The stand-in runs 60 s unless the
    # interrupt reaches it, so a join within 30 s is the interrupt's doing.
    deadline = time.monotonic() + 30
    while "Previewing update (primary)" not in lines and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "Previewing update (primary)" in lines, "the stand-in CLI never started its preview"
    ws.interrupt(again=False)
    worker.join(30)
    assert not worker.is_alive()
    assert errors
    assert "error: preview canceled" in str(errors[0])
    calls = fake_cli.read_text().splitlines()
    assert calls.count("SIGINT") == 1
    # Its own session: a terminal's Ctrl-C reaches the fleet alone, which passes on one SIGINT.
    preview_call = next(line for line in calls if line.startswith("preview "))
    assert preview_call.rsplit(" ", 1)[-1] != str(os.getsid(0))


def test_an_interrupt_that_lands_mid_print_still_prints_and_stops() -> None:
    # Python runs the handler on the main thread between bytecodes, possibly inside a print.
    control = Control()
    exits: list[int] = []

    class Terminal(io.StringIO):
        handler: Interrupts | None = None

        def write(self, s: str) -> int:
            handler, self.handler = self.handler, None
            if handler is not None:
                handler(signal.SIGINT, None)
            return super().write(s)

    out = Terminal()
    console = Console(out)
    out.handler = Interrupts(FakeWorkspace(), control, console, exit_now=exits.append)
    printing = threading.Thread(target=console.line, args=("[primary] up started",), daemon=True)
    printing.start()
    printing.join(5)
    assert not printing.is_alive(), "the handler deadlocked on the console"
    assert control.stop.is_set()
    assert "interrupted: starting no further stack" in out.getvalue()
