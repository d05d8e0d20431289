"""`./sovereign up|preview|drift --all | --stacks a,b`: the fleet on Pulumi's Automation API.

    up --all | --stacks A,B [--concurrency N] [--keep-going] [--log-dir DIR] [--dir DIR]
    preview --all | --stacks A,B [...]
    drift --all | --stacks A,B [...]          refresh preview: does the cloud match the state?

Order: every stack's config is validated and the fleet invariants are checked over every
`Pulumi.*.yaml` first (nothing starts on a broken fleet); then the primary, alone, because each
secondary reads its outputs (StackReference); then the secondaries, at most N at a time. A
failed secondary never stops the others; a failed primary skips the secondaries of an `up`
(they would read outputs it did not finish) unless `--keep-going`. Each stack's engine output
goes to `<log-dir>/<stack>.log` and, prefixed `[stack]`, to the terminal; a table ends the run.

Running it again resumes: a stack already up to date is a no-op (`pulumi up` finds no
changes), a failed one is retried.

Only `up` creates a stack in the backend. `preview` and `drift` select it: a stack file whose
stack the backend does not have yet (a new region in a pull request) is named, `preview` prints
its offline plan (`./sovereign plan`) with a note that the first `up` creates it, and `drift`
fails with its name. A preview that created it would leave an empty stack behind for a pull
request that may never merge, and the next `drift` would find nothing to compare.

Ctrl-C (SIGINT): the first starts no further stack and passes the interrupt on to the Pulumi
CLI of each running one (each runs in its own session, so it gets exactly one), which finishes
the resource operations in flight and releases the stack's lock; the table then says which
stacks finished, which were cancelled and which never started, and the exit status is 130. A
second Ctrl-C exits at once, naming the stacks that may be left locked (`pulumi cancel`).

The engine is driven through a small interface (`Workspace` -> `FleetStack`); the real one,
`AutomationWorkspace`, is `pulumi.automation` with this directory as the project (it needs the
Pulumi CLI at run time), and the tests drive the same runner with a fake.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal, Protocol, TextIO, cast

import yaml

from tools import stack_secrets
from tools.stacks import ROOT, PlanError, stack_names

Operation = Literal["up", "preview", "drift"]
OPERATIONS: Final[tuple[Operation, ...]] = ("up", "preview", "drift")

# ---- the default bound: Hetzner's rate limit ------------------------------------------------
#
# Hetzner allows 3,600 API requests per hour per project, refilled one per second
# (tools/hetzner_requests.yaml has the source). One region's `pulumi up` from nothing makes
# about REQUESTS_PER_REGION of them: the Hetzner resources of the committed secondary's offline
# plan (3 servers, 3 primary IPs, network, subnet, firewall and its attachment, SSH key,
# placement group, and the HA API load balancer with its network attachment, 3 targets and 6443
# service, the worker pool's 2 servers, their subnet, placement group and network attachments,
# the autoscaled pool's placement group,
# and the region's record, an empty placement group: components/record.py) times
# each type's requests per create, polling included (`hetzner_requests`; a test recomputes the
# figure from tests/golden/secondary.json, so it moves with the program).
#
# N regions in flight, each taking REGION_MINUTES, start 60/REGION_MINUTES * N regions an hour
# and spend that many times REQUESTS_PER_REGION requests. The fleet keeps to DEPLOYER_SHARE of
# the hourly limit, leaving the rest to what else uses the project's token (operators, the
# drift check, controllers in the clusters):
#
#     N = floor(3600 * 0.5 / (187 * 60 / 10)) = floor(1800 / 1122) = 1
#
# REGION_MINUTES is an assumption (servers ~1 min, cloud-init and k3s, then four Helm releases
# waiting for readiness), not a measurement: the summary table prints real durations. Regions
# in separate Hetzner projects do not share a limit; raise --concurrency for them.
DATA: Final = Path(__file__).with_name("hetzner_requests.yaml")
REQUESTS_PER_REGION: Final = 187
REGION_MINUTES: Final = 10
DEPLOYER_SHARE: Final = 0.5


def _data() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(DATA.read_text()))


def hetzner_requests(resource_types: Iterable[str]) -> int:
    """Hetzner API requests to create these resources (one type per resource), polls included."""
    data = _data()
    table = cast(Mapping[str, int], data["requestsPerCreate"])
    unlisted = int(data["unlistedHcloudType"])
    return sum(table.get(typ, unlisted) for typ in resource_types if typ.startswith("hcloud:"))


def default_concurrency(requests_per_region: int = REQUESTS_PER_REGION) -> int:
    hourly = int(_data()["hourlyLimit"])
    per_slot_hour = requests_per_region * 60 / REGION_MINUTES
    return max(1, math.floor(hourly * DEPLOYER_SHARE / per_slot_hour))


# ---- the interface around the engine --------------------------------------------------------

OnOutput = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation changed, by Pulumi's operation names (create, update, same, ...)."""

    changes: Mapping[str, int] = field(default_factory=dict[str, int])

    @property
    def changed(self) -> int:
        return sum(n for op, n in self.changes.items() if op not in UNCHANGED_OPS)


# Operations that leave a resource as it was (refresh previews report reads as well).
UNCHANGED_OPS: Final = frozenset({"same", "read", "refresh"})


class FleetStack(Protocol):
    def up(self, on_output: OnOutput) -> Outcome: ...
    def preview(self, on_output: OnOutput) -> Outcome: ...
    def preview_refresh(self, on_output: OnOutput) -> Outcome: ...


class Workspace(Protocol):
    def stack(self, name: str, *, create: bool) -> FleetStack:
        """The stack `name`: created on the backend if missing when `create` (only `up`),
        otherwise `StackMissingError` when the backend does not have it."""
        ...

    def interrupt(self, *, again: bool) -> None:
        """Pass SIGINT on to every Pulumi operation in flight (`again`: the second one)."""
        ...


class FleetError(Exception):
    """A problem the user fixes (no CLI, unknown stack, broken fleet): printed, no traceback."""


class StackMissingError(Exception):
    """The backend has no stack of this name (preview and drift never create one)."""

    def __init__(self, stack: str) -> None:
        super().__init__(f"stack {stack} is not in the backend")
        self.stack = stack


def _counts(raw: Mapping[Any, Any] | None) -> dict[str, int]:
    # Preview summaries key by OpType (a str enum), update summaries by plain strings.
    return {str(getattr(op, "value", op)): int(n) for op, n in (raw or {}).items()}


# The sovereign-guardrails pack (policy/) runs in every fleet `up` and `preview`, as in
# `./sovereign up|preview <stack>` and the PR's live preview: a violation fails the stack.
POLICY_PACK: Final = ROOT / "policy"


class AutomationStack:
    """One stack through `pulumi.automation.Stack`."""

    def __init__(self, stack: Any, policy_packs: Sequence[Path] = (POLICY_PACK,)) -> None:
        self._stack = stack
        self._policy_packs = [str(pack) for pack in policy_packs]

    def up(self, on_output: OnOutput) -> Outcome:
        result = self._stack.up(
            on_output=on_output,
            on_error=on_output,
            color="never",
            message="sovereign fleet up",
            policy_packs=self._policy_packs,
        )
        return Outcome(_counts(result.summary.resource_changes))

    def preview(self, on_output: OnOutput) -> Outcome:
        result = self._stack.preview(
            on_output=on_output,
            on_error=on_output,
            color="never",
            diff=True,
            policy_packs=self._policy_packs,
        )
        return Outcome(_counts(result.change_summary))

    def preview_refresh(self, on_output: OnOutput) -> Outcome:
        result = self._stack.preview_refresh(on_output=on_output, on_error=on_output, color="never")
        return Outcome(_counts(result.change_summary))


class CliProcesses:
    """The Pulumi CLI processes in flight, so that an interrupt reaches each of them once.

    Each runs in its own session: a Ctrl-C in the terminal goes to the fleet process alone, which
    passes it on (`signal_all`). Sharing the terminal's process group instead, every CLI would
    get the terminal's SIGINT and the fleet's as well: two, which Pulumi reads as "terminate now,
    leave the lock".
    """

    def __init__(self) -> None:
        # Re-entrant: the SIGINT handler signals them on the main thread.
        self._lock = threading.RLock()
        self._live: set[subprocess.Popen[str]] = set()

    def start(self, cmd: list[str], cwd: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
        with self._lock:
            process = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                start_new_session=True,
            )
            self._live.add(process)
        return process

    def done(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._live.discard(process)

    def signal_all(self, signum: int) -> int:
        with self._lock:
            live = [p for p in self._live if p.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):  # it ended in between
                process.send_signal(signum)
        return len(live)


def _pump(stream: TextIO, callback: OnOutput | None, lines: list[str]) -> None:
    for line in iter(stream.readline, ""):
        text = line.rstrip()
        lines.append(text)
        if callback is not None:
            callback(text)
    stream.close()


def interruptible_command(auto: Any, processes: CliProcesses) -> Any:
    """A `pulumi.automation.PulumiCommand` whose CLI processes `processes` can interrupt.

    `Stack.up/preview/preview_refresh` and `select_stack` all run the CLI through
    `PulumiCommand.run`; this one starts it in its own session (see `CliProcesses`) and keeps
    the SDK's contract: `--non-interactive`, the automation marker in the environment, a
    `CommandResult`, and the SDK's typed error (say, `StackNotFoundError`) on a non-zero exit.
    """

    class InterruptibleCommand(auto.PulumiCommand):
        def run(
            self,
            args: list[str],
            cwd: str,
            additional_env: Mapping[str, str],
            on_output: OnOutput | None = None,
            on_error: OnOutput | None = None,
        ) -> Any:
            argv = [self.command, *(() if "--non-interactive" in args else ("--non-interactive",))]
            env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
            process = processes.start([*argv, *args], cwd, env)
            out: list[str] = []
            err: list[str] = []
            try:
                assert process.stdout is not None
                assert process.stderr is not None
                pumps = [
                    threading.Thread(target=_pump, args=(process.stdout, on_output, out)),
                    threading.Thread(target=_pump, args=(process.stderr, on_error, err)),
                ]
                for pump in pumps:
                    pump.start()
                for pump in pumps:
                    pump.join()
                code = process.wait()
            finally:
                processes.done(process)
            result = auto.CommandResult(stdout="\n".join(out), stderr="\n".join(err), code=code)
            if code != 0:
                from pulumi.automation.errors import create_command_error

                raise create_command_error(result)
            return result

    return InterruptibleCommand


class AutomationWorkspace:
    """`pulumi.automation` over this project directory: its Pulumi.yaml and stack files.

    The backend is the CLI's: PULUMI_BACKEND_URL, or the `pulumi login` in effect.
    """

    def __init__(self, work_dir: Path, secrets_provider: str = "passphrase") -> None:
        from pulumi import automation as auto

        from tools import pulumi_cli

        try:
            # The pinned CLI, installed into the repository when there is none.
            cli = pulumi_cli.locate(
                installer=pulumi_cli.install,
                say=lambda text: print(text, file=sys.stderr, flush=True),
            )
        except pulumi_cli.CliError as err:
            raise FleetError(str(err)) from None
        self._auto = auto
        self._work_dir = work_dir
        self._processes = CliProcesses()
        try:
            # One version check for the whole fleet, not one `pulumi version` per stack.
            self._command = interruptible_command(auto, self._processes)(root=str(cli.root))
        except Exception as err:  # too old for the Automation API, or not runnable
            raise FleetError(f"the Pulumi CLI {cli.path} cannot be used: {err}") from None
        self._secrets_provider = secrets_provider

    def stack(self, name: str, *, create: bool) -> FleetStack:
        auto = self._auto
        opts = auto.LocalWorkspaceOptions(
            pulumi_command=self._command, secrets_provider=self._secrets_provider
        )
        if create:
            found = auto.create_or_select_stack(
                stack_name=name, work_dir=str(self._work_dir), opts=opts
            )
        else:
            try:
                found = auto.select_stack(stack_name=name, work_dir=str(self._work_dir), opts=opts)
            except auto.StackNotFoundError:
                raise StackMissingError(name) from None
        return AutomationStack(found, (self._work_dir / "policy",))

    def interrupt(self, *, again: bool) -> None:
        # The CLI's own Ctrl-C contract: the first cancels cleanly (in-flight resource
        # operations finish, the lock is released), the second terminates at once.
        self._processes.signal_all(signal.SIGINT)


# ---- the runner -----------------------------------------------------------------------------


Result = Literal["ok", "failed", "skipped", "new", "missing", "cancelled", "not started"]
# Rows that make the run fail: `new` is a preview's stack that `up` will create.
FAILED_RESULTS: Final = frozenset({"failed", "skipped", "missing", "cancelled", "not started"})


@dataclass(frozen=True, slots=True)
class StackRun:
    stack: str
    result: Result
    seconds: float
    changes: Mapping[str, int] = field(default_factory=dict[str, int])
    detail: str = ""

    @property
    def changed(self) -> int:
        return Outcome(self.changes).changed


@dataclass(frozen=True, slots=True)
class Selection:
    primary: str | None
    secondaries: tuple[str, ...]


class Console:
    """Prefixed lines from many threads, one whole line at a time."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        # Re-entrant: the SIGINT handler prints on the main thread, which may be inside `line`.
        self._lock = threading.RLock()

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


class Control:
    """What a fleet run shares with its SIGINT handler: stop starting, and what is running."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        # Re-entrant: the SIGINT handler reads it on the main thread, whatever that was doing.
        self._lock = threading.RLock()
        self._running: list[str] = []

    def begin(self, stack: str) -> bool:
        """Mark `stack` running, unless the run was interrupted first (then: start nothing)."""
        with self._lock:
            if self.stop.is_set():
                return False
            self._running.append(stack)
            return True

    def end(self, stack: str) -> None:
        with self._lock:
            self._running.remove(stack)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)


OfflinePlan = Callable[[str, Path, Path], tuple[int, str]]


def offline_plan(stack: str, directory: Path, log_dir: Path) -> tuple[int, str]:
    """`./sovereign plan STACK`: its summary (and the JSON plan beside the stack's log).

    A separate process: the plan runs the program under the SDK's mocks, whose state is
    global, while other stacks of the fleet are running in this one.
    """
    target = log_dir / f"{stack}.plan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.plan", stack, "--dir", str(directory), "--json", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).rstrip()


def hint(stack: str, text: str) -> str:
    """What to do next, for the failures an interrupted or concurrent run leaves behind."""
    if "currently locked" in text or "Another update is currently in progress" in text:
        return (
            f"another update holds {stack}'s lock; if none is running (an interrupted run left "
            f"it): pulumi cancel --stack {stack}, then run again"
        )
    if "pending operations" in text or "interrupted while" in text:
        return (
            f"an interrupted update left pending operations: check them in the Hetzner "
            f"console, then pulumi refresh --stack {stack} (--clear-pending-creates drops "
            "creates that never happened), then run again"
        )
    return ""


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    chosen = errors[-1] if errors else (lines[-1] if lines else "failed")
    return chosen if len(chosen) <= 200 else chosen[:197] + "..."


NEW_STACK_NOTE: Final = (
    "not in the backend yet: nothing was created; the first `up` creates it (in CI: on merge). "
    "Its offline plan (./sovereign plan):"
)


def _missing(
    op: Operation, stack: str, say: OnOutput, directory: Path, log_dir: Path, plan: OfflinePlan
) -> tuple[Result, str]:
    if op == "drift":
        say(
            f"drift: stack {stack} is not in the backend: nothing to compare; deploy it with "
            f"./sovereign up --stacks {stack}"
        )
        return "missing", f"not in the backend (./sovereign up --stacks {stack})"
    say(f"preview: stack {stack} is {NEW_STACK_NOTE}")
    code, text = plan(stack, directory, log_dir)
    for line in text.splitlines():
        say(line)
    if code != 0:
        return "new", "not in the backend; created by the first up; its offline plan failed"
    return "new", "not in the backend; created by the first up (offline plan above)"


def run_one(
    workspace: Workspace,
    op: Operation,
    stack: str,
    console: Console,
    log_dir: Path,
    *,
    control: Control | None = None,
    directory: Path = ROOT,
    plan: OfflinePlan = offline_plan,
) -> StackRun:
    """One stack, start to summary; any exception becomes this stack's failed row."""
    control = control or Control()
    if not control.begin(stack):
        return StackRun(stack, "not started", 0.0, detail="interrupted before it started")
    try:
        return _run_one(workspace, op, stack, console, log_dir, control, directory, plan)
    finally:
        control.end(stack)


def _run_one(
    workspace: Workspace,
    op: Operation,
    stack: str,
    console: Console,
    log_dir: Path,
    control: Control,
    directory: Path,
    plan: OfflinePlan,
) -> StackRun:
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (log_dir / f"{stack}.log").open("w", encoding="utf-8") as log:
        lock = threading.Lock()

        def on_output(text: str) -> None:
            for line in text.splitlines() or [""]:
                with lock:
                    log.write(line + "\n")
                    log.flush()
                console.line(f"[{stack}] {line}")

        console.line(f"[{stack}] {op} started (log: {log_dir / (stack + '.log')})")
        try:
            # Only `up` creates a stack; a preview or drift check selects an existing one.
            target = workspace.stack(stack, create=op == "up")
            if op == "up":
                outcome = target.up(on_output)
            elif op == "preview":
                outcome = target.preview(on_output)
            else:
                outcome = target.preview_refresh(on_output)
        except StackMissingError:
            result, detail = _missing(op, stack, on_output, directory, log_dir, plan)
            return StackRun(stack, result, time.monotonic() - started, detail=detail)
        except Exception as err:  # one stack's failure is its row, not the whole run's
            text = str(err)
            with lock:
                log.write(text + "\n")
            detail = _last_error_line(text)
            if control.stop.is_set():
                console.line(f"[{stack}] {op} cancelled: {detail}")
                return StackRun(stack, "cancelled", time.monotonic() - started, detail=detail)
            advice = hint(stack, text)
            console.line(f"[{stack}] {op} failed: {detail}")
            if advice:
                console.line(f"[{stack}] {advice}")
            return StackRun(
                stack,
                "failed",
                time.monotonic() - started,
                detail=f"{detail}; {advice}" if advice else detail,
            )
    elapsed = time.monotonic() - started
    console.line(f"[{stack}] {op} done in {elapsed:.0f}s")
    return StackRun(stack, "ok", elapsed, dict(outcome.changes))


def run_fleet(
    workspace: Workspace,
    op: Operation,
    selection: Selection,
    *,
    concurrency: int,
    console: Console,
    log_dir: Path,
    keep_going: bool = False,
    control: Control | None = None,
    directory: Path = ROOT,
    plan: OfflinePlan = offline_plan,
) -> list[StackRun]:
    """The primary first, alone; then the secondaries, at most `concurrency` at a time."""
    control = control or Control()

    def one(stack: str) -> StackRun:
        return run_one(
            workspace, op, stack, console, log_dir, control=control, directory=directory, plan=plan
        )

    runs: list[StackRun] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        if selection.primary is not None:
            first = _result(pool.submit(one, selection.primary))
            runs.append(first)
            if first.result == "failed" and op == "up" and not keep_going:
                reason = (
                    "not started: the primary region's stack failed and a secondary reads its "
                    "outputs (--keep-going starts them anyway)"
                )
                return runs + [
                    StackRun(s, "skipped", 0.0, detail=reason) for s in selection.secondaries
                ]
        futures = [pool.submit(one, stack) for stack in selection.secondaries]
        runs += [_result(future) for future in futures]
    return runs


def _result(future: Future[StackRun]) -> StackRun:
    """Wait on the main thread, waking up: Python runs a signal handler only on the main
    thread, and only between bytecodes; a Ctrl-C the kernel hands to a worker thread (any
    thread may take a process's signal) would otherwise wait until the stack finished."""
    while not wait([future], timeout=0.1).done:
        pass
    return future.result()


class Interrupts:
    """The fleet's SIGINT handler (installed by `main` on the main thread)."""

    def __init__(
        self,
        workspace: Workspace,
        control: Control,
        console: Console,
        exit_now: Callable[[int], Any] = os._exit,
    ) -> None:
        self.workspace = workspace
        self.control = control
        self.console = console
        self.exit_now = exit_now

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        running = self.control.running()
        if not self.control.stop.is_set():
            self.control.stop.set()
            self.console.line(
                "\ninterrupted: starting no further stack; cancelling "
                f"{', '.join(running) or 'nothing (none running)'}: Pulumi finishes the resource "
                "operations in flight and releases each stack's lock. Ctrl-C again exits at once."
            )
            self.workspace.interrupt(again=False)
            return
        self.workspace.interrupt(again=True)
        cancels = "; ".join(f"pulumi cancel --stack {stack}" for stack in running)
        self.console.line(
            "\ninterrupted again: exiting now. "
            + (
                f"These stacks may be left locked, with pending operations: {', '.join(running)}. "
                f"Once no update of theirs runs: {cancels}; then pulumi refresh --stack <stack> "
                "(check pending creates in the Hetzner console) and run again."
                if running
                else "No stack was running."
            )
        )
        self.exit_now(130)


def interrupted_summary(runs: Sequence[StackRun]) -> str:
    def named(results: set[str]) -> str:
        return ", ".join(r.stack for r in runs if r.result in results) or "none"

    return (
        f"interrupted: finished: {named({'ok', 'failed', 'new', 'missing'})}; "
        f"cancelled: {named({'cancelled'})}; never started: {named({'not started', 'skipped'})}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _changes(run: StackRun) -> str:
    moved = {op: n for op, n in sorted(run.changes.items()) if op not in UNCHANGED_OPS and n}
    if run.result != "ok":
        return "-"
    return ", ".join(f"{op} {n}" for op, n in moved.items()) or "none"


def summary_table(runs: Sequence[StackRun]) -> str:
    header = ("stack", "result", "duration", "resources changed", "detail")
    rows = [header] + [
        (r.stack, r.result, _duration(r.seconds), _changes(r), r.detail) for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
        + ("  " + row[-1] if row[-1] else "")
        for row in rows
    ).rstrip()


# ---- config: which stacks, and is the fleet sound -------------------------------------------


def select(directory: Path, names: Sequence[str] | None) -> Selection:
    """Validate every stack's config and the whole fleet; pick the primary of the selection."""
    from pulumi import RunError

    from checks.fleet import StackSummary, check_fleet, summary_of
    from checks.preflight import parse
    from tools.mockrun import offline_secrets, stack_config

    every = stack_names(directory)
    if not every:
        raise FleetError(f"no Pulumi.<stack>.yaml in {directory}")
    unknown = [name for name in names or [] if name not in every]
    if unknown:
        raise FleetError(f"no such stack(s) {', '.join(unknown)}: stacks are {' '.join(every)}")
    problems: list[str] = []
    summaries: list[StackSummary] = []
    roles: dict[str, str] = {}
    for stack in every:
        try:
            raw, secret = offline_secrets(stack_config(stack, directory))
            cfg = parse(raw, stack, secret)
        except (RunError, PlanError) as err:
            problems.append(str(err))
            continue
        summaries.append(summary_of(cfg, stack))
        roles[stack] = cfg.region.role
    if not problems:
        problems += check_fleet(summaries).problems
    if problems:
        raise FleetError(
            "the fleet is not consistent; nothing was started:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    chosen = list(names) if names else every
    primaries = [s for s in chosen if roles[s] == "primary"]
    return Selection(
        primaries[0] if primaries else None,
        tuple(s for s in chosen if roles[s] != "primary"),
    )


def token_problem(directory: Path, stacks: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """Which stacks have no Hetzner token, before anything starts (None: every one has both).

    The provider's token comes from HCLOUD_TOKEN or the stack's own `hcloud:token`; the
    cluster's, `sovereign:hcloudToken`, from the stack file only (a `secure:` value, set by
    `pulumi config set --secret`). Without them the first stack would fail at its preview.
    """
    from config.secrets import HCLOUD_TOKEN_KEY
    from tools.stacks import read_stack_file

    configs: dict[str, Mapping[str, object]] = {
        stack: read_stack_file(directory / f"Pulumi.{stack}.yaml").get("config") or {}
        for stack in stacks
    }
    problems: list[str] = []
    missing = [stack for stack, config in configs.items() if "hcloud:token" not in config]
    if missing and not environ.get("HCLOUD_TOKEN"):
        problems.append(
            f"no Hetzner Cloud token for {', '.join(missing)}: set HCLOUD_TOKEN, or per stack "
            "pulumi config set --secret hcloud:token <token> --stack <stack>"
        )
    key = f"sovereign:{HCLOUD_TOKEN_KEY}"
    missing = [stack for stack, config in configs.items() if key not in config]
    if missing:
        problems.append(
            f"no {key} (the cluster's own Hetzner token, for its cloud controller and volumes) "
            f"for {', '.join(missing)}: per stack, "
            + "; ".join(f"pulumi config set --secret {key} <token> --stack {s}" for s in missing)
            + " (the same token as hcloud:token or a separate one of the same project)"
        )
    return "\n".join(problems) or None


# ---- the command ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./sovereign", description=__doc__.split("\n\n", 1)[0] if __doc__ else None
    )
    parser.add_argument("op", choices=OPERATIONS)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every Pulumi.<stack>.yaml")
    which.add_argument("--stacks", help="comma-separated stack names, e.g. primary,hel1")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"secondaries at a time (default {default_concurrency()}: Hetzner's rate limit)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run the secondaries of an up after a failed primary",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="default .fleet-logs/<time>-<op>"
    )
    parser.add_argument("--dir", type=Path, default=ROOT, help="project directory (Pulumi.yaml)")
    parser.add_argument(
        "--secrets-provider",
        default="passphrase",
        help="for stacks created by this run (as `./sovereign up <stack>` does)",
    )
    return parser


WorkspaceFactory = Callable[[Path, str], Workspace]


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    workspace: WorkspaceFactory = AutomationWorkspace,
    plan: OfflinePlan = offline_plan,
    environ: Mapping[str, str] | None = None,
) -> int:
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    args = _parser().parse_args(argv)
    op = cast(Operation, args.op)
    names = [n.strip() for n in args.stacks.split(",") if n.strip()] if args.stacks else None
    if args.concurrency is not None and args.concurrency < 1:
        stderr.write("--concurrency must be 1 or more\n")
        return 2
    try:
        # Every stack file read and validated first: a broken one is named by file and line.
        selection = select(args.dir, names)
        # Before any stack is selected: nothing reaches the backend with an empty passphrase.
        refused = stack_secrets.problems(
            names or stack_names(args.dir),
            os.environ,
            directory=args.dir,
            default_provider=args.secrets_provider,
        )
        if refused:
            raise FleetError("\n".join(refused))
        order = ([selection.primary] if selection.primary else []) + list(selection.secondaries)
        no_token = token_problem(args.dir, order, environ if environ is not None else os.environ)
        if no_token is not None:
            raise FleetError(no_token)
        engine = workspace(args.dir, args.secrets_provider)
    except (FleetError, PlanError) as problem:
        stderr.write(f"sovereign {op}: {problem}\n")
        return 2
    concurrency = args.concurrency or default_concurrency()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = args.log_dir or args.dir / ".fleet-logs" / f"{stamp}-{op}"
    console = Console(stdout)
    console.line(
        f"sovereign {op}: {len(order)} stack(s), primary first, then up to {concurrency} at a "
        f"time: {', '.join(order)}"
    )
    control = Control()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        signal.signal(signal.SIGINT, Interrupts(engine, control, console))
        if on_main_thread
        else None
    )
    try:
        runs = run_fleet(
            engine,
            op,
            selection,
            concurrency=concurrency,
            console=console,
            log_dir=log_dir,
            keep_going=args.keep_going,
            control=control,
            directory=args.dir,
            plan=plan,
        )
    finally:
        if on_main_thread:
            signal.signal(signal.SIGINT, previous)
    console.line("\n" + summary_table(runs))
    if control.stop.is_set():
        console.line("\n" + interrupted_summary(runs))
        return 130
    missing = [run.stack for run in runs if run.result == "missing"]
    if missing:
        console.line(
            f"\n{op}: not in the backend: {', '.join(missing)} (only up creates a stack: "
            f"./sovereign up --stacks {','.join(missing)})"
        )
    if any(run.result in FAILED_RESULTS for run in runs):
        console.line(f"\nrun it again to resume: stacks already up to date are a no-op ({log_dir})")
        return 1
    if op == "drift" and any(run.changed for run in runs):
        console.line("\ndrift: the cloud differs from the state of the stacks with changes above")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
