"""The upgrade path of a running region: one minor at a time, every step inside the matrix.

Neither Kubernetes nor Cilium may skip a minor (the Kubernetes version skew policy; Cilium's
upgrade guide: "upgrade to the next minor release ... one at a time"), and every combination a
region passes through must be one each upstream supports (config/data/support_matrix.yaml).
`path()` plans the steps, one `up` each: Cilium first wherever the newer line also supports the
running Kubernetes (a newer Cilium supports newer minors), then Kubernetes. Preflight refuses a
config that is not the next step of such a path from what the region runs, naming the next one;
`./sovereign upgrade-path` prints the whole list.

What a region runs is read back from Hetzner labels: `openova.io/k3s-version` on its servers and
`openova.io/cilium-version` on its record, written only after the Cilium release succeeded
(components/record.py; the servers' own Cilium label, from earlier versions, as a fallback).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from config.errors import Problem
from config.models import StackConfig
from config.support import MATRIX, Matrix, minor, minor_key

K3S_KEY = "sovereign:controlPlane.k3sVersion"
CILIUM_KEY = "sovereign:cilium.version"
# A region deployed before the Cilium label existed runs the only Cilium line the program could
# deploy then: the matrix listed 1.18 alone, pinned at 1.18.12 (2026-11-27 to 2026-12-04).
LEGACY_CILIUM: str = "1.18.12"


@dataclass(frozen=True, slots=True)
class Running:
    """What a region runs: the k3s release and the Cilium chart version."""

    k3s: str
    cilium: str


@dataclass(frozen=True, slots=True)
class Step:
    """One `up`: the config keys it changes, and the versions the region runs after it."""

    changes: tuple[tuple[str, str], ...]
    k3s: str
    cilium: str

    def render(self) -> str:
        return ", ".join(f"{key}: {value}" for key, value in self.changes)


class NoPathError(ValueError):
    """No sequence of supported one-minor steps reaches the target."""


def _supported(kube: str, cilium_line: str, cfg: StackConfig, matrix: Matrix) -> bool:
    line = matrix.cilium.get(cilium_line)
    cert_manager = matrix.cert_manager.get(minor(cfg.cert_manager.version) or "")
    return (
        line is not None
        and kube in line.kubernetes
        and (cert_manager is None or kube in cert_manager.kubernetes)
    )


def _next(value: str, known: Mapping[str, object]) -> str | None:
    """The minor after `value` if it is a known one (no skipping over a gap in the data)."""
    major, _, rest = value.partition(".")
    candidate = f"{major}.{int(rest) + 1}"
    return candidate if candidate in known else None


def path(
    cfg: StackConfig,
    running: Running,
    target_k3s: str,
    target_cilium: str | None = None,
    matrix: Matrix = MATRIX,
) -> list[Step]:
    """The ordered steps from `running` to Kubernetes `target_k3s` (and Cilium `target_cilium`,
    else the oldest line that supports it), one minor of one component per step."""
    start = (minor(running.k3s) or "", minor(running.cilium) or "")
    goal_kube = minor(target_k3s) or ""
    goal_cilium = minor(target_cilium) if target_cilium else None
    if minor_key(goal_kube) < minor_key(start[0]):
        raise NoPathError(f"k3s cannot go back from {running.k3s} to {target_k3s}")
    # Breadth first over (Kubernetes minor, Cilium line): the fewest `up`s, Cilium first on ties.
    previous: dict[tuple[str, str], tuple[str, str] | None] = {start: None}
    queue = deque([start])
    found: tuple[str, str] | None = None
    while queue:
        state = queue.popleft()
        kube, line = state
        if kube == goal_kube and (goal_cilium is None or line == goal_cilium):
            found = state
            break
        for following in (
            (kube, _next(line, matrix.cilium)),
            (_next(kube, matrix.kubernetes_eol), line),
        ):
            if following[0] is None or following[1] is None:
                continue
            candidate = (following[0], following[1])
            if candidate in previous or not _supported(*candidate, cfg, matrix):
                continue
            if minor_key(candidate[0]) > minor_key(goal_kube):
                continue
            previous[candidate] = state
            queue.append(candidate)
    if found is None:
        raise NoPathError(
            f"no sequence of supported one-minor steps leads from k3s {running.k3s} with "
            f"Cilium {running.cilium} to Kubernetes {goal_kube}"
            + (f" with Cilium {goal_cilium}" if goal_cilium else "")
            + " (config/data/support_matrix.yaml)"
        )
    states: list[tuple[str, str]] = []
    cursor: tuple[str, str] | None = found
    while cursor is not None:
        states.append(cursor)
        cursor = previous[cursor]
    states.reverse()
    steps: list[Step] = []
    k3s, cilium = running.k3s, running.cilium
    for before, after in itertools.pairwise(states):
        if after[1] != before[1]:
            cilium = (
                target_cilium
                if target_cilium and after[1] == goal_cilium
                else matrix.cilium[after[1]].chart
            )
            changes = [(CILIUM_KEY, cilium)]
            pinned = cfg.cilium.gateway_api.crds_version
            wanted = matrix.cilium[after[1]].gateway_api
            if pinned is not None and wanted and pinned not in wanted:
                changes.append(("sovereign:cilium.gatewayApi.crdsVersion", wanted[-1]))
            steps.append(Step(tuple(changes), k3s, cilium))
        else:
            k3s = target_k3s if after[0] == goal_kube else matrix.k3s[after[0]].version
            steps.append(Step(((K3S_KEY, k3s),), k3s, cilium))
    if minor(k3s) == goal_kube and k3s != target_k3s:
        # A patch release of the same minor: one more `up`, no minor moves.
        steps.append(Step(((K3S_KEY, target_k3s),), target_k3s, cilium))
    return steps


def running_of(k3s: Mapping[str, str], cilium: Mapping[str, str]) -> Running | None:
    """What the region runs from its servers' labels (server -> version); None when new.

    The oldest k3s decides (a Plan may be half-way), and a region whose servers carry no Cilium
    label yet runs `LEGACY_CILIUM`.
    """
    if not k3s:
        return None
    from render.system_upgrade import version_key

    oldest = min(k3s.values(), key=version_key)
    lines = sorted(cilium.values(), key=lambda v: minor_key(minor(v) or "0.0"))
    return Running(k3s=oldest, cilium=lines[0] if lines else LEGACY_CILIUM)


def first_cilium_line(
    cfg: StackConfig, recorded_first: Mapping[str, str], running: Running | None
) -> str:
    """The Cilium minor the region was first installed with (render/cilium.upgrade_compatibility).

    As its servers record it (`openova.io/cilium-first`); a region deployed before that label
    existed, by the line it runs now (before 2026-12-04 every region started on the line it runs,
    1.18 without a Cilium label); a new region, by the line it is about to install.
    """
    if recorded_first:
        return min(recorded_first.values(), key=minor_key)
    if running is not None:
        return minor(running.cilium) or minor(LEGACY_CILIUM) or ""
    return minor(cfg.cilium.version) or ""


def step_problems(cfg: StackConfig, running: Running | None) -> list[Problem]:
    """Refuse a config that is not one supported step from what the region runs."""
    if running is None:
        return []
    wanted_k3s, wanted_cilium = cfg.control_plane.k3s_version, cfg.cilium.version
    kube_from, kube_to = minor(running.k3s) or "", minor(wanted_k3s) or ""
    line_from, line_to = minor(running.cilium) or "", minor(wanted_cilium) or ""
    if (kube_from, line_from) == (kube_to, line_to):
        return []
    if minor_key(line_to) < minor_key(line_from):
        return [
            Problem(
                CILIUM_KEY,
                repr(wanted_cilium),
                f"the region runs Cilium {running.cilium}; going back a minor is not an upgrade "
                f"this program performs (keep {line_from}.x or newer)",
            )
        ]
    kube_steps = minor_key(kube_to)[1] - minor_key(kube_from)[1]
    line_steps = minor_key(line_to)[1] - minor_key(line_from)[1]
    if kube_steps < 0 or (kube_steps <= 1 and line_steps <= 1 and kube_steps + line_steps <= 1):
        # A k3s downgrade is the skew check's to name (checks/day2.py); one step is fine when
        # the matrix supports the result (checks/versions.py judges the target itself).
        return []
    try:
        steps = path(cfg, running, wanted_k3s, wanted_cilium)
    except NoPathError as err:
        return [Problem(K3S_KEY, repr(wanted_k3s), f"{err}")]
    # Name the key to hold back: Kubernetes whenever it moves (Cilium goes first), else Cilium.
    key, requested = (K3S_KEY, wanted_k3s) if kube_steps else (CILIUM_KEY, wanted_cilium)
    return [
        Problem(
            key,
            repr(requested),
            f"the region runs k3s {running.k3s} with Cilium {running.cilium} (Hetzner labels); "
            f"one `up` moves one minor of one of them, inside the support matrix, so this is "
            f"{len(steps)} steps away. Next allowed step: {steps[0].render()} "
            f"(./sovereign upgrade-path shows them all)",
        )
    ]
