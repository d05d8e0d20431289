"""`plan --all`: the fleet of regions (every `Pulumi.*.yaml` stack) checked as one Sovereign.

`check_fleet` is pure: it takes one `StackSummary` per stack, from the offline evaluation of
each stack (`plan --all`) or from the deployed stacks' outputs (`plan --all --live`), and
returns every violated invariant at once:

- exactly one primary region;
- distinct region keys and region indexes (the index drives the CIDRs and Cilium's cluster id);
- pod and service CIDRs that overlap nowhere across regions;
- DoD A4: 1 MGMT + N DMZ + (N-1) RTZ vClusters for N regions, shown like the dashboard:
  `vClusters 6/6 (MGMT 1/1, DMZ 3/3, RTZ 2/2)`.
"""

from __future__ import annotations

import gc
import importlib
import ipaddress
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TextIO

from tools.plan_json import as_dict, as_list

VCLUSTERS: Final = ("mgmt", "dmz", "rtz")
# DoD A4: which vClusters each role runs.
ROLE_VCLUSTERS: Final[Mapping[str, frozenset[str]]] = {
    "primary": frozenset({"mgmt", "dmz"}),
    "secondary": frozenset({"dmz", "rtz"}),
}
# From this many stacks on, two workers clearly beat one process (measured: README, "Speed");
# below it both take about as long, the SDK import dominating either way.
POOL_FROM: Final = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class StackSummary:
    """What the fleet check needs of one stack. Live outputs may lack index and CIDRs."""

    stack: str
    role: str
    key: str
    vclusters: tuple[str, ...]
    index: int | None = None
    pod_cidr: str | None = None
    service_cidr: str | None = None


@dataclass(frozen=True, slots=True)
class FleetReport:
    problems: list[str]
    dashboard: str
    counts: dict[str, tuple[int, int]] = field(default_factory=dict[str, tuple[int, int]])

    @property
    def ok(self) -> bool:
        return not self.problems


def _stacks(names: Sequence[str]) -> str:
    return ", ".join(sorted(names))


def _duplicates(
    summaries: Sequence[StackSummary], what: str, key: str, values: Mapping[str, object]
) -> list[str]:
    by_value: dict[str, list[str]] = {}
    for summary in summaries:
        value = values.get(summary.stack)
        if value is not None:
            by_value.setdefault(str(value), []).append(summary.stack)
    return [
        f"{what} {value!r} is used by stacks {_stacks(stacks)} ({key}); each region needs its own"
        for value, stacks in sorted(by_value.items())
        if len(stacks) > 1
    ]


def _cidr_problems(summaries: Sequence[StackSummary]) -> list[str]:
    ranges: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    problems: list[str] = []
    for summary in summaries:
        for key, cidr in (
            ("sovereign:network.podCidr", summary.pod_cidr),
            ("sovereign:network.serviceCidr", summary.service_cidr),
        ):
            if cidr is None:
                continue
            try:
                ranges.append((summary.stack, key, ipaddress.ip_network(cidr)))
            except ValueError:
                problems.append(f"stack {summary.stack}: {key} {cidr!r} is not a CIDR")
    for i, (stack_a, key_a, net_a) in enumerate(ranges):
        for stack_b, key_b, net_b in ranges[i + 1 :]:
            if stack_a != stack_b and net_a.overlaps(net_b):
                problems.append(
                    f"stacks {stack_a} and {stack_b}: {key_a} {net_a} ({stack_a}) overlaps "
                    f"{key_b} {net_b} ({stack_b}); regions route each other's pods and "
                    "services, so every range must be distinct (set them, or give each "
                    "region its own sovereign:region.index)"
                )
    return problems


def check_fleet(summaries: Sequence[StackSummary]) -> FleetReport:
    """Every fleet invariant over one summary per stack (pure)."""
    problems: list[str] = []
    regions = len(summaries)
    if not regions:
        return FleetReport(["no stacks: expected one Pulumi.<stack>.yaml per region"], "")
    for summary in summaries:
        if summary.role not in ROLE_VCLUSTERS:
            problems.append(
                f"stack {summary.stack}: sovereign:region.role {summary.role!r} is neither "
                "primary nor secondary"
            )
    primaries = [s.stack for s in summaries if s.role == "primary"]
    if len(primaries) != 1:
        found = f"{len(primaries)} ({_stacks(primaries)})" if primaries else "none"
        problems.append(
            f"exactly one primary region is required (sovereign:region.role = primary), "
            f"found {found}"
        )
    problems += _duplicates(
        summaries, "region key", "sovereign:region.key", {s.stack: s.key for s in summaries}
    )
    problems += _duplicates(
        summaries, "region index", "sovereign:region.index", {s.stack: s.index for s in summaries}
    )
    problems += _cidr_problems(summaries)

    expected = {"mgmt": 1, "dmz": regions, "rtz": regions - 1}
    actual = {name: sum(name in s.vclusters for s in summaries) for name in VCLUSTERS}
    counts = {name: (actual[name], expected[name]) for name in VCLUSTERS}
    parts = ", ".join(f"{name.upper()} {actual[name]}/{expected[name]}" for name in VCLUSTERS)
    # Like the DoD dashboard: the total counts only vClusters a region should run, so a
    # second MGMT never makes up for a missing RTZ.
    healthy = sum(min(actual[name], expected[name]) for name in VCLUSTERS)
    dashboard = f"vClusters {healthy}/{sum(expected.values())} ({parts})"
    for summary in summaries:
        wanted = ROLE_VCLUSTERS.get(summary.role)
        if wanted is None:
            continue
        have = set(summary.vclusters)
        missing = sorted(wanted - have, key=VCLUSTERS.index)
        extra = sorted(have - wanted)
        if missing:
            problems.append(
                f"stack {summary.stack} ({summary.role}): no "
                f"{', '.join(v.upper() for v in missing)} vCluster; DoD A4 runs "
                f"{' + '.join(v.upper() for v in sorted(wanted, key=VCLUSTERS.index))} "
                f"in every {summary.role} region"
            )
        if extra:
            problems.append(
                f"stack {summary.stack} ({summary.role}): unexpected vCluster(s) {extra}"
            )
    if actual != expected:
        problems.append(f"{dashboard}: expected 1 MGMT + {regions} DMZ + {regions - 1} RTZ")
    return FleetReport(problems, dashboard, counts)


# --------------------------------------------------------------------------------------------
# Offline: evaluate every stack


@dataclass(frozen=True, slots=True)
class StackResult:
    stack: str
    summary: StackSummary | None
    error: str | None


def summarize_stack(stack: str, directory: Path) -> StackResult:
    """Evaluate one stack under mocks: role, key and vClusters from its outputs."""
    from tools.stacks import PlanError, evaluate_stack

    try:
        cfg, run = evaluate_stack(stack, directory)
    except PlanError as err:
        return StackResult(stack, None, str(err))
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
    return StackResult(stack, summary, None)


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
    missing = [key for key in ("role", "regionKey", "vclusters") if key not in outputs]
    if missing:
        return StackResult(
            stack, None, f"stack {stack}: outputs {missing} missing (deployed before they existed?)"
        )
    return StackResult(stack, _summary_from_outputs(stack, outputs), None)


def _summary_from_outputs(stack: str, outputs: Mapping[str, Any]) -> StackSummary:
    index = outputs.get("regionIndex")
    pod, service = outputs.get("podCidr"), outputs.get("serviceCidr")
    return StackSummary(
        stack=stack,
        role=str(outputs["role"]),
        key=str(outputs["regionKey"]),
        vclusters=tuple(str(v) for v in as_list(outputs["vclusters"]) or []),
        index=index if isinstance(index, int) else None,
        pod_cidr=pod if isinstance(pod, str) else None,
        service_cidr=service if isinstance(service, str) else None,
    )


def live_fleet(stacks: Sequence[str], directory: Path) -> list[StackResult]:
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        return [
            StackResult(s, None, "the Pulumi CLI is not on PATH (needed by --live)") for s in stacks
        ]
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
        results = live_fleet(stacks, directory)
    else:
        results = evaluate_fleet(stacks, directory, jobs, standalone=standalone)
    summaries = [r.summary for r in results if r.summary is not None]
    errors = [r.error for r in results if r.error is not None]
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
