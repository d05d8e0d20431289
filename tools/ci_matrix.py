"""CI: this checkout's stacks as JSON for `strategy.matrix`, so a new region needs no workflow edit.

    python -m tools.ci_matrix [DIR]    prints `stacks=`, `primary=` and `secondaries=` lines
                                        (append them to $GITHUB_OUTPUT)

Only the stack files are read (PyYAML, no Pulumi SDK), so the listing job stays small. A stack
name ends up in job names, concurrency groups and environment names: anything but letters,
digits, `-`, `_` and `.` is refused.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Final, cast

import yaml

NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")


class MatrixError(Exception):
    pass


def matrix(directory: Path) -> dict[str, Any]:
    stacks: list[str] = []
    roles: dict[str, str] = {}
    for path in sorted(directory.glob("Pulumi.*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        if not NAME.fullmatch(stack):
            raise MatrixError(f"{path.name}: a stack name of letters, digits, '-', '_', '.' only")
        doc: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        config: dict[str, Any] = doc.get("config") or {}
        region: object = config.get("sovereign:region")
        stacks.append(stack)
        roles[stack] = (
            str(cast(dict[str, Any], region).get("role", "")) if isinstance(region, dict) else ""
        )
    primaries = [s for s in stacks if roles[s] == "primary"]
    return {
        "stacks": stacks,
        # Exactly one primary is the fleet check's business (it names every culprit); here the
        # first one found goes first, so a broken fleet still fails in the deploy job's check.
        "primary": primaries[0] if primaries else "",
        "secondaries": [s for s in stacks if s not in primaries[:1]],
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else Path.cwd()
    try:
        found = matrix(directory)
    except MatrixError as err:
        print(f"ci_matrix: {err}", file=sys.stderr)
        return 1
    if not found["stacks"]:
        print(f"ci_matrix: no Pulumi.<stack>.yaml in {directory}", file=sys.stderr)
        return 1
    for key, value in found.items():
        print(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
