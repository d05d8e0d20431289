"""The fleet invariants: one set of pure checks over one summary per region.

Three callers share them, so a rule is written once:
- `./sovereign plan --all` (offline, every `Pulumi.*.yaml`) and `--live` (deployed outputs);
- the program itself: each secondary reads its primary's outputs through a StackReference and
  checks the pair at preview (`components/fleet.py`);
- `./sovereign up --all` before it starts the first stack (`tools/fleet.py`).

Invariants, each reported with its key and the stacks involved:
- exactly one primary region;
- distinct region keys and region indexes (the index drives the CIDRs and Cilium's cluster id);
- pod and service CIDRs that overlap nowhere across regions;
- DoD A4: 1 MGMT + N DMZ + (N-1) RTZ vClusters for N regions, shown like the dashboard:
  `vClusters 6/6 (MGMT 1/1, DMZ 3/3, RTZ 2/2)`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi

from config.models import StackConfig
from render.slots import active_vclusters

VCLUSTERS: Final = ("mgmt", "dmz", "rtz")
# DoD A4: which vClusters each role runs.
ROLE_VCLUSTERS: Final[Mapping[str, frozenset[str]]] = {
    "primary": frozenset({"mgmt", "dmz"}),
    "secondary": frozenset({"dmz", "rtz"}),
}
# The stack outputs a region must export for the others (and `plan --all --live`) to check it.
# __main__.py exports them; a test keeps this list and the program's exports in step.
FLEET_OUTPUTS: Final = ("role", "regionKey", "regionIndex", "podCidr", "serviceCidr", "vclusters")


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


def summary_of(cfg: StackConfig, stack: str) -> StackSummary:
    """A stack's summary from its validated config alone (no program run)."""
    return StackSummary(
        stack=stack,
        role=cfg.region.role,
        key=cfg.region.key,
        vclusters=tuple(active_vclusters(cfg)),
        index=cfg.region.index,
        pod_cidr=cfg.pod_cidr,
        service_cidr=cfg.service_cidr,
    )


def outputs_of(summary: StackSummary) -> dict[str, Any]:
    """The fleet outputs (`FLEET_OUTPUTS`) a stack with this summary exports."""
    return {
        "role": summary.role,
        "regionKey": summary.key,
        "regionIndex": summary.index,
        "podCidr": summary.pod_cidr,
        "serviceCidr": summary.service_cidr,
        "vclusters": list(summary.vclusters),
    }


def missing_outputs(outputs: Mapping[str, Any]) -> list[str]:
    return [key for key in FLEET_OUTPUTS if outputs.get(key) is None]


def summary_from_outputs(stack: str, outputs: Mapping[str, Any]) -> StackSummary:
    """A deployed stack's summary from its outputs; absent index or CIDRs stay None."""
    index = outputs.get("regionIndex")
    pod, service = outputs.get("podCidr"), outputs.get("serviceCidr")
    raw_vclusters = outputs.get("vclusters")
    vclusters: list[Any] = raw_vclusters if isinstance(raw_vclusters, list) else []  # pyright: ignore[reportUnknownVariableType]
    return StackSummary(
        stack=stack,
        role=str(outputs.get("role")),
        key=str(outputs.get("regionKey")),
        vclusters=tuple(str(v) for v in vclusters),
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        pod_cidr=pod if isinstance(pod, str) else None,
        service_cidr=service if isinstance(service, str) else None,
    )


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


def check_against_primary(
    own: StackSummary, primary: StackSummary, outputs: Mapping[str, Any]
) -> list[str]:
    """A secondary and the primary it references, checked as a fleet of two.

    `outputs` are the primary's stack outputs as read; a primary deployed before it exported
    the fleet outputs is named with what is missing instead of being half-checked.
    """
    missing = missing_outputs(outputs)
    if missing:
        return [
            f"stack {primary.stack} exports no {', '.join(missing)}: run `pulumi up` on it "
            f"first (the fleet outputs are checked by every secondary, here {own.stack})"
        ]
    return check_fleet([primary, own]).problems


class FleetError(pulumi.RunError):
    """A region disagrees with its primary: raised at preview, printed without a traceback."""

    def __init__(self, own: str, primary: str, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = [
            f"fleet check failed: stack {own!r} and its primary {primary!r} "
            f"(sovereign:fleet.primaryStack) disagree ({len(self.problems)} problem(s)):"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))
