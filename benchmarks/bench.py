"""Wall time and peak memory of the offline plan, as whole processes, on this machine.

    .venv/bin/python benchmarks/bench.py [--repeat N] [--no-tests]

Prints a Markdown table (median wall time of N runs, largest peak RSS) and checks the goals:
one stack's plan within 1.5x the bare SDK import, fleet cost linear in regions, test suite
under 30 s. Peak memory comes from `/usr/bin/time -v` when present, else from
`getrusage(RUSAGE_CHILDREN)`; for `--all` with workers it is the largest single process.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.plan_fleet import generate_fleet  # noqa: E402 - needs ROOT on sys.path

PYTHON = str(ROOT / ".venv" / "bin" / "python")
SDKS = (
    "import pulumi, pulumi_hcloud, pulumi_kubernetes, pulumi_command, pulumi_random, pulumi_tls,"
    " pydantic, yaml"
)
# `import pulumi_kubernetes` is lazy: the program also loads these submodules, the bulk of
# its import time (core.v1 alone builds ~2,000 typed classes).
SDKS_AS_USED = SDKS + (
    "; import pulumi_kubernetes.core.v1, pulumi_kubernetes.meta.v1, pulumi_kubernetes.helm.v3,"
    " pulumi_kubernetes.networking.v1, pulumi_kubernetes.apiextensions, pulumi_kubernetes.yaml.v2"
)
# Rendering (issue 9) adds Helm's Go SDK and the Kubernetes schema validator to the plan.
SDKS_AS_USED_RENDERING = SDKS_AS_USED + "; import helm_python, jsonschema, kubernetes_validate"
TIME = "/usr/bin/time"
REGIONS = (1, 10, 50)
# Wall time counts as linear in regions when a straight line explains this much of it.
LINEAR_R2 = 0.98
RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    seconds: float
    rss_mb: float
    ok: bool


def measure(
    name: str,
    argv: Sequence[str],
    repeat: int,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
) -> Result:
    walls: list[float] = []
    peak_kb = 0
    ok = True
    use_time = Path(TIME).is_file()
    for _ in range(repeat):
        command = [TIME, "-v", *argv] if use_time else list(argv)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        walls.append(time.perf_counter() - start)
        ok = ok and proc.returncode == 0
        if use_time and (match := RSS.search(proc.stderr)):
            peak_kb = max(peak_kb, int(match.group(1)))
        else:
            peak_kb = max(peak_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    return Result(name, statistics.median(walls), peak_kb / 1024, ok)


def linear_fit(times: dict[int, float]) -> tuple[float, float]:
    """Least-squares slope (seconds per region) and R^2 of wall time against regions."""
    xs, ys = list(times), list(times.values())
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - (mean_y + slope * (x - mean_x))) ** 2 for x, y in zip(xs, ys, strict=True))
    total = sum((y - mean_y) ** 2 for y in ys) or 1.0
    return slope, 1 - residual / total


def marginal_costs_fall(times: dict[int, float]) -> bool:
    """True when each added region costs no more than one added at a smaller fleet size."""
    sizes = sorted(times)
    marginal = [(times[b] - times[a]) / (b - a) for a, b in pairwise(sizes)]
    return all(later <= earlier for earlier, later in pairwise(marginal))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wall time and peak memory of the offline plan.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-tests", action="store_true", help="skip the test-suite row")
    args = parser.parse_args(argv)
    n = args.repeat
    results: list[Result] = [
        measure("import the SDKs alone", [PYTHON, "-c", SDKS], n),
        measure(
            "import the SDKs + k8s submodules the program uses", [PYTHON, "-c", SDKS_AS_USED], n
        ),
        measure(
            "import the SDKs + k8s submodules + helm_python, jsonschema, kubernetes_validate",
            [PYTHON, "-c", SDKS_AS_USED_RENDERING],
            n,
        ),
        # No render cache: every chart rendered by Helm and every object validated.
        measure(
            "plan primary, cold (no render cache)",
            [PYTHON, "-m", "tools.plan", "primary", "--json", "-"],
            n,
            env={"SOVEREIGN_CACHE_DIR": ""},
        ),
        measure(
            "plan primary (1 server)", [PYTHON, "-m", "tools.plan", "primary", "--json", "-"], n
        ),
        measure(
            "plan secondary (3 servers)",
            [PYTHON, "-m", "tools.plan", "secondary", "--json", "-"],
            n,
        ),
    ]
    fleets: dict[str, dict[int, float]] = {"default jobs": {}, "--jobs 1": {}}
    with tempfile.TemporaryDirectory(prefix="sovereign-bench-") as tmp:
        for regions in REGIONS:
            directory = Path(tmp) / f"fleet-{regions}"
            generate_fleet(directory, regions)
            plan_all = [PYTHON, "-m", "tools.plan", "--all", "--dir", str(directory)]
            for label, extra in (("default jobs", []), ("--jobs 1", ["--jobs", "1"])):
                name = f"plan --all, {regions} region(s), {label}"
                result = measure(name, [*plan_all, *extra], n)
                fleets[label][regions] = result.seconds
                results.append(result)
    if not args.no_tests:
        results.append(
            measure(
                "test suite (pytest -q -n auto)", [PYTHON, "-m", "pytest", "-q", "-n", "auto"], 1
            )
        )

    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"median of {n} run(s)\n"
    )
    print("| Run | Wall time | Peak RSS | Exit |")
    print("|---|---:|---:|---|")
    for r in results:
        print(
            f"| {r.name} | {r.seconds:.2f} s | {r.rss_mb:.0f} MB | {'ok' if r.ok else 'FAILED'} |"
        )

    by_name = {r.name: r for r in results}
    bare = by_name["import the SDKs alone"].seconds
    used = by_name["import the SDKs + k8s submodules the program uses"].seconds
    rendering = by_name[
        "import the SDKs + k8s submodules + helm_python, jsonschema, kubernetes_validate"
    ].seconds
    plan = by_name["plan primary (1 server)"].seconds
    cold = by_name["plan primary, cold (no render cache)"].seconds
    print("\nGoals:")
    print(
        f"- plan of one stack (render cache warm) {plan:.2f} s = {plan / used:.2f}x the import "
        f"of what it uses ({used:.2f} s): {'met' if plan <= 1.2 * used else 'missed'} (goal 1.2x)"
        f"; {plan / bare:.1f}x the bare import ({bare:.2f} s)"
    )
    print(
        f"- plan of one stack, cold (renders and validates) {cold:.2f} s = "
        f"{cold / rendering:.2f}x the import of what it uses then ({rendering:.2f} s): "
        f"{'met' if cold <= 1.2 * rendering else 'missed'} (goal 1.2x)"
    )
    for label, times in fleets.items():
        slope, r2 = linear_fit(times)
        verdict = "linear" if r2 >= LINEAR_R2 else "NOT linear"
        if r2 < LINEAR_R2 and marginal_costs_fall(times):
            # The default starts workers only from POOL_FROM stacks: one region pays no pool,
            # so later regions cost less each. Growth no faster than linear is the goal.
            verdict = "better than linear (the cost of one more region falls as regions grow)"
        print(
            f"- fleet, {label}: {slope:.3f} s per region, R^2 {r2:.3f} over {list(times)} "
            f"regions: {verdict}"
        )
    if "test suite (pytest -q -n auto)" in by_name:
        suite = by_name["test suite (pytest -q -n auto)"]
        verdict = "met" if suite.seconds < 30 else "missed"
        failed = "" if suite.ok else " - the suite FAILED"
        print(f"- test suite {suite.seconds:.1f} s: {verdict} (goal < 30 s){failed}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
