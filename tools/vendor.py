"""Vendored upstream files: verify their sha256s, refresh one from refs/.

    python -m tools.vendor verify                      every listed file present, sha256 equal,
                                                       nothing unlisted in render/charts/ and
                                                       render/upstream/
    python -m tools.vendor refresh FILE... [--refs DIR] copy FILE (a path inside the steering
                                                       repo's refs/, e.g. charts/x.tgz or
                                                       crds/gateway-api-v1.4.0/x.yaml) and
                                                       record its sha256 in vendor.yaml

Upstream data only ever comes from the steering repository's `refs/` (default `../shared/refs`
beside the clone), which keeps each file's provenance; each folder's `SOURCES.md` carries it
over. Chart packages and values schemas go to `render/charts/`, everything under `refs/crds/`
to `render/upstream/` (same relative path). The checks themselves are `render.pins`, which the
program and the plan call too.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from render.pins import CHARTS_DIR, MANIFEST, UPSTREAM_DIR, VENDOR_DIRS, problems, raw_manifest
from render.pins import sha256 as sha256

ROOT: Final = Path(__file__).resolve().parent.parent
VENDOR_DIR: Final = CHARTS_DIR
DEFAULT_REFS: Final = ROOT.parent / "shared" / "refs"
CRDS: Final = "crds/"
HEADER: Final = """\
# Upstream files, byte-for-byte from the steering repo's refs/ (../shared/refs).
# `python -m tools.vendor verify` checks every sha256 (render/pins.py, which `pulumi up` and the
# plan call too); `python -m tools.vendor refresh` copies a file from refs/ and records its
# sha256. Provenance in prose: SOURCES.md.
"""


def manifest(directory: Path = VENDOR_DIR) -> dict[str, dict[str, Any]]:
    return raw_manifest(directory)


def verify(directory: Path | None = None) -> list[str]:
    """Every problem with one vendored folder, or with all of them (prefixed by folder)."""
    if directory is not None:
        return problems(directory)
    return [f"{d.name}/{problem}" for d in VENDOR_DIRS for problem in problems(d)]


def destination(relative: str) -> tuple[Path, str]:
    """Where a refs/ file is vendored: (folder, path inside it)."""
    if relative.startswith(CRDS):
        return UPSTREAM_DIR, relative.removeprefix(CRDS)
    return CHARTS_DIR, Path(relative).name


def refresh(files: Sequence[str], refs: Path, directory: Path | None = None) -> list[str]:
    """Copy each refs/ file here and record its sha256; returns the SOURCES.md rows to add."""
    rows: list[str] = []
    changed: dict[Path, dict[str, dict[str, Any]]] = {}
    for relative in files:
        source = refs / relative
        if not source.is_file():
            raise FileNotFoundError(f"{source}: not in the steering repo's refs/")
        folder, name = destination(relative)
        folder = directory or folder
        listed = changed.setdefault(folder, manifest(folder))
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        digest = sha256(target)
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
    for folder, listed in changed.items():
        body = yaml.safe_dump({"files": dict(sorted(listed.items()))}, sort_keys=True, width=1000)
        (folder / MANIFEST).write_text(HEADER + body)
    return rows


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.vendor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check every vendored file against its vendor.yaml")
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
        out.write("recorded in vendor.yaml; add to the folder's SOURCES.md:\n")
        out.write("\n".join(rows) + "\n")
    found = verify()
    for problem in found:
        out.write(f"{problem}\n")
    if not found:
        total = sum(len(manifest(d)) for d in VENDOR_DIRS)
        out.write(f"{total} vendored files verified\n")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
