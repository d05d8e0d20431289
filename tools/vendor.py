"""Vendored upstream files in `render/charts/`: verify their sha256s, refresh one from refs/.

    python -m tools.vendor verify                      every listed file present, sha256 equal,
                                                       nothing unlisted in the directory
    python -m tools.vendor refresh FILE... [--refs DIR] copy FILE (a path inside the steering
                                                       repo's refs/, e.g. charts/x.tgz) and
                                                       record its sha256 in vendor.yaml

Upstream data only ever comes from the steering repository's `refs/` (default `../shared/refs`
beside the clone), which keeps each file's provenance; `SOURCES.md` here carries it over.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from tools.plan_json import as_dict

ROOT: Final = Path(__file__).resolve().parent.parent
VENDOR_DIR: Final = ROOT / "render" / "charts"
MANIFEST: Final = "vendor.yaml"
# Files of the directory itself, not upstream data.
OWN_FILES: Final = frozenset({MANIFEST, "SOURCES.md"})
DEFAULT_REFS: Final = ROOT.parent / "shared" / "refs"
HEADER: Final = """\
# Upstream chart packages and values schemas, byte-for-byte from the steering repo's refs/
# (../shared/refs). `tools/vendor.py verify` checks every sha256; `tools/vendor.py refresh`
# copies a file from refs/ and records its sha256. Provenance in prose: SOURCES.md.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(directory: Path = VENDOR_DIR) -> dict[str, dict[str, Any]]:
    doc = as_dict(yaml.safe_load((directory / MANIFEST).read_text())) or {}
    files = as_dict(doc.get("files")) or {}
    return {str(name): as_dict(entry) or {} for name, entry in files.items()}


def verify(directory: Path = VENDOR_DIR) -> list[str]:
    """Every problem with the vendored files, empty when all is well."""
    problems: list[str] = []
    listed = manifest(directory)
    sources = (directory / "SOURCES.md").read_text()
    for name, entry in sorted(listed.items()):
        path = directory / name
        expected = str(entry.get("sha256", ""))
        if not path.is_file():
            problems.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        actual = sha256(path)
        if actual != expected:
            problems.append(f"{name}: sha256 {actual}, {MANIFEST} says {expected}")
        if expected not in sources:
            problems.append(f"{name}: its sha256 is not in SOURCES.md (provenance missing)")
        for key in ("source", "checked", "refs"):
            if not entry.get(key):
                problems.append(f"{name}: no `{key}` in {MANIFEST}")
    for path in sorted(directory.iterdir()):
        if path.name not in OWN_FILES and path.name not in listed:
            problems.append(f"{path.name}: not listed in {MANIFEST} (no provenance)")
    return problems


def refresh(files: Sequence[str], refs: Path, directory: Path = VENDOR_DIR) -> list[str]:
    """Copy each refs/ file here and record its sha256; returns the SOURCES.md rows to add."""
    listed = manifest(directory)
    rows: list[str] = []
    for relative in files:
        source = refs / relative
        if not source.is_file():
            raise FileNotFoundError(f"{source}: not in the steering repo's refs/")
        name = Path(relative).name
        shutil.copyfile(source, directory / name)
        digest = sha256(directory / name)
        entry = listed.setdefault(name, {})
        entry.update(
            refs=relative,
            sha256=digest,
            checked=date.today().isoformat(),
            source=entry.get("source") or f"see {refs.name}/SOURCES.md ({relative})",
        )
        rows.append(
            f"| `{name}` | (copy the row of {relative} from refs/SOURCES.md) | `{digest}` |"
        )
    body = yaml.safe_dump({"files": dict(sorted(listed.items()))}, sort_keys=True, width=1000)
    (directory / MANIFEST).write_text(HEADER + body)
    return rows


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.vendor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check every vendored file against vendor.yaml")
    fresh = sub.add_parser("refresh", help="copy files from refs/ and record their sha256")
    fresh.add_argument(
        "files", nargs="+", help="paths inside refs/, e.g. charts/cilium-1.18.13.tgz"
    )
    fresh.add_argument("--refs", default=str(DEFAULT_REFS), help="the steering repo's refs/")
    args = parser.parse_args(argv)
    if args.command == "refresh":
        try:
            rows = refresh(args.files, Path(args.refs))
        except FileNotFoundError as err:
            out.write(f"{err}\n")
            return 1
        out.write("recorded in render/charts/vendor.yaml; add to render/charts/SOURCES.md:\n")
        out.write("\n".join(rows) + "\n")
    problems = verify()
    for problem in problems:
        out.write(f"{problem}\n")
    if not problems:
        out.write(f"{len(manifest())} vendored files verified\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
