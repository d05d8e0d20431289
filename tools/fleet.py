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

The engine is driven through a small interface (`Workspace` -> `FleetStack`); the real one,
`AutomationWorkspace`, is `pulumi.automation` with this directory as the project (it needs the
Pulumi CLI at run time), and the tests drive the same runner with a fake.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TextIO, cast

import yaml

from tools.stacks import ROOT, stack_names

Operation = Literal["up", "preview", "drift"]
OPERATIONS: Final[tuple[Operation, ...]] = ("up", "preview", "drift")

# ---- the default bound: Hetzner's rate limit ------------------------------------------------
#
# Hetzner allows 3,600 API requests per hour per project, refilled one per second
# (tools/hetzner_requests.yaml has the source). One region's `pulumi up` from nothing makes
# about REQUESTS_PER_REGION of them: the Hetzner resources of the committed secondary's offline
# plan (3 servers, 3 primary IPs, network, subnet, firewall, SSH key, placement group, and the
# HA API load balancer with its network attachment, 3 targets and 6443 service) times
# each type's requests per create, polling included (`hetzner_requests`; a test recomputes the
# figure from tests/golden/secondary.json, so it moves with the program).
#
# N regions in flight, each taking REGION_MINUTES, start 60/REGION_MINUTES * N regions an hour
# and spend that many times REQUESTS_PER_REGION requests. The fleet keeps to DEPLOYER_SHARE of
# the hourly limit, leaving the rest to what else uses the project's token (operators, the
# drift check, controllers in the clusters):
#
#     N = floor(3600 * 0.5 / (120 * 60 / 10)) = floor(1800 / 720) = 2
#
# REGION_MINUTES is an assumption (servers ~1 min, cloud-init and k3s, then four Helm releases
# waiting for readiness), not a measurement: the summary table prints real durations. Regions
# in separate Hetzner projects do not share a limit; raise --concurrency for them.
DATA: Final = Path(__file__).with_name("hetzner_requests.yaml")
REQUESTS_PER_REGION: Final = 120
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
    def stack(self, name: str) -> FleetStack:
        """The stack `name`, created on the backend if it does not exist yet."""
        ...


class FleetError(Exception):
    """A problem the user fixes (no CLI, unknown stack, broken fleet): printed, no traceback."""


MISSING_CLI: Final = (
    "the Pulumi CLI (`pulumi`) is not on PATH: the fleet commands drive it through Pulumi's "
    "Automation API. Install it (https://www.pulumi.com/docs/install/) and run again; "
    "`./sovereign plan --all` checks the fleet offline without it."
)


def _counts(raw: Mapping[Any, Any] | None) -> dict[str, int]:
    # Preview summaries key by OpType (a str enum), update summaries by plain strings.
    return {str(getattr(op, "value", op)): int(n) for op, n in (raw or {}).items()}


class AutomationStack:
    """One stack through `pulumi.automation.Stack`."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack

    def up(self, on_output: OnOutput) -> Outcome:
        result = self._stack.up(
            on_output=on_output, on_error=on_output, color="never", message="sovereign fleet up"
        )
        return Outcome(_counts(result.summary.resource_changes))

    def preview(self, on_output: OnOutput) -> Outcome:
        result = self._stack.preview(
            on_output=on_output, on_error=on_output, color="never", diff=True
        )
        return Outcome(_counts(result.change_summary))

    def preview_refresh(self, on_output: OnOutput) -> Outcome:
        result = self._stack.preview_refresh(on_output=on_output, on_error=on_output, color="never")
        return Outcome(_counts(result.change_summary))


class AutomationWorkspace:
    """`pulumi.automation` over this project directory: its Pulumi.yaml and stack files.

    The backend is the CLI's: PULUMI_BACKEND_URL, or the `pulumi login` in effect.
    """

    def __init__(self, work_dir: Path, secrets_provider: str = "passphrase") -> None:
        if shutil.which("pulumi") is None:
            raise FleetError(MISSING_CLI)
        from pulumi import automation as auto

        self._auto = auto
        self._work_dir = work_dir
        # One version check for the whole fleet, not one `pulumi version` per stack.
        self._command = auto.PulumiCommand()
        self._secrets_provider = secrets_provider

    def stack(self, name: str) -> FleetStack:
        auto = self._auto
        stack = auto.create_or_select_stack(
            stack_name=name,
            work_dir=str(self._work_dir),
            opts=auto.LocalWorkspaceOptions(
                pulumi_command=self._command, secrets_provider=self._secrets_provider
            ),
        )
        return AutomationStack(stack)


# ---- the runner -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackRun:
    stack: str
    result: Literal["ok", "failed", "skipped"]
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
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


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


def run_one(
    workspace: Workspace, op: Operation, stack: str, console: Console, log_dir: Path
) -> StackRun:
    """One stack, start to summary; any exception becomes this stack's failed row."""
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
            target = workspace.stack(stack)
            if op == "up":
                outcome = target.up(on_output)
            elif op == "preview":
                outcome = target.preview(on_output)
            else:
                outcome = target.preview_refresh(on_output)
        except Exception as err:  # one stack's failure is its row, not the whole run's
            text = str(err)
            with lock:
                log.write(text + "\n")
            detail = _last_error_line(text)
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
) -> list[StackRun]:
    """The primary first, alone; then the secondaries, at most `concurrency` at a time."""
    runs: list[StackRun] = []
    if selection.primary is not None:
        first = run_one(workspace, op, selection.primary, console, log_dir)
        runs.append(first)
        if first.result == "failed" and op == "up" and not keep_going:
            reason = f"primary {first.stack} failed; secondaries read its outputs (--keep-going)"
            return runs + [
                StackRun(s, "skipped", 0.0, detail=reason) for s in selection.secondaries
            ]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [
            pool.submit(run_one, workspace, op, stack, console, log_dir)
            for stack in selection.secondaries
        ]
        runs += [future.result() for future in futures]
    return runs


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
    from tools.mockrun import stack_config

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
            cfg = parse(stack_config(stack, directory), stack)
        except RunError as err:
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
        engine = workspace(args.dir, args.secrets_provider)
        selection = select(args.dir, names)
    except FleetError as problem:
        stderr.write(f"sovereign {op}: {problem}\n")
        return 2
    concurrency = args.concurrency or default_concurrency()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = args.log_dir or args.dir / ".fleet-logs" / f"{stamp}-{op}"
    console = Console(stdout)
    order = ([selection.primary] if selection.primary else []) + list(selection.secondaries)
    console.line(
        f"sovereign {op}: {len(order)} stack(s), primary first, then up to {concurrency} at a "
        f"time: {', '.join(order)}"
    )
    runs = run_fleet(
        engine,
        op,
        selection,
        concurrency=concurrency,
        console=console,
        log_dir=log_dir,
        keep_going=args.keep_going,
    )
    console.line("\n" + summary_table(runs))
    if any(run.result != "ok" for run in runs):
        console.line(f"\nrun it again to resume: stacks already up to date are a no-op ({log_dir})")
        return 1
    if op == "drift" and any(run.changed for run in runs):
        console.line("\ndrift: the cloud differs from the state of the stacks with changes above")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
