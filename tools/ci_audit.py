"""zizmor over the workflows: what .ci/run requires of them (issue 16 §1).

    python -m tools.ci_audit [DIR]      default .github/workflows; exit 0 clean, 1 findings

Two runs of zizmor (pinned in requirements-dev.txt, offline: no GitHub API):
- `--persona=auditor`, which reports everything zizmor can see, must report no
  `secrets-outside-env` (a secret a job reads without a GitHub environment: any branch's
  workflow file can read repository secrets) and no `secrets-inherit` (a called workflow that
  receives every secret instead of the ones it names);
- the default persona must report nothing. A finding accepted on purpose is an inline
  `# zizmor: ignore[<audit>]` comment on its line with the reason beside it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from tools.stacks import ROOT

SECRET_AUDITS: Final = frozenset({"secrets-outside-env", "secrets-inherit"})


class AuditError(Exception):
    """zizmor is missing or did not run (not a finding)."""


@dataclass(frozen=True, slots=True)
class Finding:
    audit: str
    where: str
    severity: str

    def __str__(self) -> str:
        return f"{self.where}: {self.audit} ({self.severity})"


def zizmor() -> str:
    beside = Path(sys.executable).with_name("zizmor")
    found = str(beside) if beside.is_file() else shutil.which("zizmor")
    if found is None:
        raise AuditError(
            "zizmor is not installed: pip install --require-hashes -r requirements-dev.txt"
        )
    return found


def findings(report: Sequence[Any]) -> list[Finding]:
    """zizmor's JSON report as findings, each placed at its first location's file and line."""
    out: list[Finding] = []
    for raw in report:
        item = cast(dict[str, Any], raw)
        if item.get("ignored"):
            continue
        where = "?"
        locations = cast(list[dict[str, Any]], item.get("locations") or [])
        if locations:
            primary = [x for x in locations if x.get("symbolic", {}).get("kind") == "Primary"]
            first = (primary or locations)[0]
            key = cast(dict[str, Any], first.get("symbolic", {}).get("key", {}))
            path = cast(dict[str, Any], key.get("Local", {})).get("verbatim_path", "?")
            row = first.get("concrete", {}).get("location", {}).get("start_point", {}).get("row")
            path = str(path).removeprefix(f"{ROOT}/")
            where = f"{path}:{int(row) + 1}" if isinstance(row, int) else path
        severity = str(cast(dict[str, Any], item.get("determinations", {})).get("severity", "?"))
        out.append(Finding(str(item.get("ident", "?")), where, severity))
    return out


def run(target: Path, persona: str) -> list[Finding]:
    proc = subprocess.run(
        [
            zizmor(),
            "--offline",
            "--no-progress",
            f"--persona={persona}",
            "--format=json",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # zizmor exits non-zero when it finds something; only an unreadable report is an error.
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise AuditError(
            f"zizmor exited {proc.returncode} without a report: {proc.stderr.strip()}"
        ) from err
    return findings(cast(list[Any], report))


def problems(target: Path) -> list[str]:
    found = [f"auditor persona: {f}" for f in run(target, "auditor") if f.audit in SECRET_AUDITS]
    found += [f"default audit: {f}" for f in run(target, "regular")]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else ROOT / ".github" / "workflows"
    try:
        found = problems(target)
    except AuditError as err:
        sys.stderr.write(f"ci_audit: {err}\n")
        return 2
    for line in found:
        print(line)
    print("zizmor: no findings" if not found else f"zizmor: {len(found)} finding(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
