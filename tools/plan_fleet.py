"""`plan --all`: the fleet of regions (every `Pulumi.*.yaml` stack) checked as one Sovereign.

One `StackSummary` per stack, from the offline evaluation of each stack (`plan --all`) or from
the deployed stacks' outputs (`plan --all --live`), goes through `checks.fleet.check_fleet`:
the same pure checks each secondary runs against its primary at preview (StackReference) and
`./sovereign up --all` runs before it starts.
"""

from __future__ import annotations

import gc
import importlib
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, TextIO

from checks.fleet import (
    FleetReport,
    StackSummary,
    check_fleet,
    missing_outputs,
    summary_from_outputs,
)
from tools.plan_json import as_dict, as_list

__all__ = ["FleetReport", "StackSummary", "check_fleet", "evaluate_fleet", "run_fleet"]

# From this many stacks on, two workers clearly beat one process (measured: docs/review.md,
# "Speed"); below it both take about as long, the SDK import dominating either way.
POOL_FROM: Final = 4


# --------------------------------------------------------------------------------------------
# Offline: evaluate every stack


@dataclass(frozen=True, slots=True)
class StackResult:
    stack: str
    summary: StackSummary | None
    error: str | None
    # The program's warnings (`pulumi.log.warn`), e.g. a Kubernetes minor past its support.
    logs: tuple[str, ...] = ()


def shared_warnings(results: Sequence[StackResult]) -> list[str]:
    """Each warning once, naming every stack it came from: the program writes `stack NAME: ...`
    and a fleet of stacks on one k3s pin would otherwise repeat the same notice per stack."""
    stacks_of: dict[str, list[str]] = {}
    for result in results:
        for line in result.logs:
            level, _, text = line.partition(": ")
            prefix = f"stack {result.stack}: "
            key = f"{level}: {text.removeprefix(prefix)}"
            stacks_of.setdefault(key, []).append(result.stack)
    lines: list[str] = []
    for key, stacks in stacks_of.items():
        level, _, text = key.partition(": ")
        label = "stack" if len(stacks) == 1 else "stacks"
        lines.append(f"{level}: {label} {', '.join(stacks)}: {text}")
    return lines


def summarize_stack(stack: str, directory: Path) -> StackResult:
    """Evaluate one stack under mocks: role, key and vClusters from its outputs.

    A secondary whose own preview-time check against its primary fails (the program's
    StackReference, served from the primary's stack file) is summarised from its config
    instead: the fleet check over every stack reports the same problem with the whole fleet
    in view, so it is not reported twice.
    """
    from pulumi import RunError

    from checks.fleet import FleetError, summary_of
    from checks.preflight import parse as parse_config
    from tools.mockrun import evaluate, stack_config
    from tools.stacks import PlanError, require_stack

    try:
        require_stack(stack, directory)
        raw = stack_config(stack, directory)
        cfg = parse_config(raw, stack)
    except PlanError as err:
        return StackResult(stack, None, str(err))
    except RunError as err:
        return StackResult(stack, None, str(err))
    run = evaluate(stack, raw=raw, directory=directory)
    logs = tuple(run.logs)
    if isinstance(run.error, FleetError):
        return StackResult(stack, summary_of(cfg, stack), None, logs)
    if run.error is not None:
        return StackResult(stack, None, str(run.error), logs)
    vclusters = tuple(str(v) for v in as_list(run.outputs.get("vclusters")) or [])
    summary = StackSummary(
        stack=stack,
        role=str(run.outputs.get("role")),
        key=str(run.outputs.get("regionKey")),
        vclusters=vclusters,
        index=cfg.region.index,
        pod_cidr=cfg.pod_cidr,
        service_cidr=cfg.service_cidr,
    )
    return StackResult(stack, summary, None, logs)


_frozen: list[bool] = []


def _summarize(stack: str, directory: Path) -> StackResult:
    """`summarize_stack`, then (once per process) freeze what the first run imported.

    Later garbage collections then skip the SDKs' hundred thousand objects: a fleet of 50
    evaluates about 20% faster at the same peak memory. Only in a process of our own (a
    worker, or the CLI): frozen objects are never freed.
    """
    result = summarize_stack(stack, directory)
    if not _frozen:
        gc.freeze()
        _frozen.append(True)
    return result


def _warm_up() -> None:
    """Import the program's SDKs once, before workers fork (they inherit the modules)."""
    for module in ("pulumi_kubernetes", "components.slots", "tools.mockrun"):
        importlib.import_module(module)


def evaluate_fleet(
    stacks: Sequence[str], directory: Path, jobs: int | None, *, standalone: bool = False
) -> list[StackResult]:
    """Summaries in stack order; with 2+ workers the stacks are evaluated in parallel.

    `standalone`: this process is the CLI's own, so it may fork and freeze the GC.
    """
    if jobs is None:
        jobs = min(2, os.cpu_count() or 1) if len(stacks) >= POOL_FROM else 1
    # Only the CLI's own process forks: a caller's process (a test session) is left alone,
    # and forking one that already runs threads (an earlier evaluation's executor) could
    # deadlock the child.
    if not standalone or jobs <= 1 or len(stacks) < 2 or threading.active_count() > 1:
        one = _summarize if standalone else summarize_stack
        return [one(stack, directory) for stack in stacks]
    # Workers fork from a parent that imported the SDK core once and runs no event loop or
    # thread yet; each worker then evaluates its share of the stacks.
    _warm_up()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(_summarize, stacks, [directory] * len(stacks)))


# --------------------------------------------------------------------------------------------
# Live: the deployed stacks' outputs


def live_summary(stack: str, directory: Path, pulumi: str) -> StackResult:
    """`pulumi stack output --json --stack NAME` (secrets stay "[secret]": no --show-secrets)."""
    proc = subprocess.run(
        [pulumi, "stack", "output", "--json", "--stack", stack],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit code {proc.returncode}"
        return StackResult(stack, None, f"pulumi stack output --stack {stack} failed: {detail}")
    try:
        outputs = as_dict(json.loads(proc.stdout))
    except json.JSONDecodeError:
        outputs = None
    if outputs is None:
        return StackResult(stack, None, f"pulumi stack output --stack {stack}: not a JSON object")
    missing = [key for key in ("role", "regionKey", "vclusters") if key in missing_outputs(outputs)]
    if missing:
        return StackResult(
            stack, None, f"stack {stack}: outputs {missing} missing (deployed before they existed?)"
        )
    return StackResult(stack, summary_from_outputs(stack, outputs), None)


def live_fleet(stacks: Sequence[str], directory: Path, pulumi: str) -> list[StackResult]:
    # Each call waits on the backend, not the CPU: threads overlap them.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(stacks)))) as pool:
        return list(pool.map(partial(live_summary, directory=directory, pulumi=pulumi), stacks))


# --------------------------------------------------------------------------------------------
# The command


def _table(summaries: Sequence[StackSummary]) -> list[str]:
    header = ("stack", "role", "key", "index", "pod CIDR", "service CIDR", "vClusters")
    rows = [header] + [
        (
            s.stack,
            s.role,
            s.key,
            "-" if s.index is None else str(s.index),
            s.pod_cidr or "-",
            s.service_cidr or "-",
            ", ".join(s.vclusters) or "-",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def run_fleet(
    directory: Path,
    *,
    live: bool,
    jobs: int | None,
    out: TextIO,
    err: TextIO,
    standalone: bool = False,
) -> int:
    from tools.stacks import stack_names

    stacks = stack_names(directory)
    if live:
        from tools.pulumi_cli import CliError, locate

        try:
            # A missing tool, said once: not a problem of every stack in the fleet.
            cli = locate(installer=None)
        except CliError as error:
            err.write(f"plan --all --live reads the deployed stacks' outputs: {error}\n")
            return 2
        results = live_fleet(stacks, directory, str(cli.path))
    else:
        results = evaluate_fleet(stacks, directory, jobs, standalone=standalone)
    summaries = [r.summary for r in results if r.summary is not None]
    errors = [r.error for r in results if r.error is not None]
    for line in shared_warnings(results):
        err.write(f"{line}\n")
    source = "deployed outputs" if live else "offline evaluation"
    out.write(f"sovereign fleet: {len(stacks)} stack(s) in {directory} ({source})\n")
    if summaries:
        out.write("\n".join(_table(summaries)) + "\n")
    if live and summaries and all(s.pod_cidr is None for s in summaries):
        out.write("  (CIDRs and indexes are not stack outputs: checked offline by plan --all)\n")
    report = check_fleet(summaries) if not errors else None
    if report is not None and report.dashboard:
        out.write(f"\n{report.dashboard}\n")
    problems = errors + (report.problems if report is not None else [])
    if problems:
        err.write("fleet check failed:\n")
        for problem in problems:
            first, *rest = problem.splitlines()
            err.write("".join([f"  - {first}\n", *(f"    {line}\n" for line in rest)]))
        return 1
    out.write("fleet OK\n")
    return 0


# --------------------------------------------------------------------------------------------
# Generated fleets (tests and benchmarks)


def generate_fleet(directory: Path, regions: int, source: Path | None = None) -> list[str]:
    """Write a valid fleet of `regions` stacks into `directory`: one primary, then secondaries.

    Each stack is the committed primary's config with its own role, key (`nbg1-<i>`),
    index i and so its own default CIDRs. Pulumi.yaml is copied alongside.
    """
    import yaml

    from tools.stacks import ROOT

    base = source or ROOT
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base / "Pulumi.yaml", directory / "Pulumi.yaml")
    template = yaml.safe_load((base / "Pulumi.primary.yaml").read_text())["config"]
    names: list[str] = []
    for index in range(regions):
        config = dict(template)
        primary = index == 0
        region = dict(config["sovereign:region"])
        region.update(
            role="primary" if primary else "secondary",
            key="fsn1" if primary else f"nbg1-{index}",
            location="fsn1" if primary else "nbg1",
            index=index,
        )
        config["sovereign:region"] = region
        if not primary:
            config["sovereign:vclusters"] = {
                name: {"podSecurity": {"enforce": "baseline"}} for name in ("dmz", "rtz")
            }
        name = "primary" if primary else f"region-{index:02d}"
        text = yaml.safe_dump({"config": config}, sort_keys=True)
        (directory / f"Pulumi.{name}.yaml").write_text(text)
        names.append(name)
    return names
