"""The config changes that move a region to a supported Kubernetes, one `pulumi up` each.

    ./sovereign upgrade-path STACK [--to K3S_VERSION] [--cilium VERSION]
                                   [--running-cilium VERSION] [--dir DIR]

Offline and without credentials. What the region runs is what its stack file pins
(`Pulumi.STACK.yaml`): keep that file at what the region runs, then walk the steps. A file with
no `sovereign:cilium.version` on a Kubernetes minor Cilium 1.18 supports may have been written
before the key existed: it is taken to run 1.18.12, the only line the program deployed then,
and the output says it is assumed; --running-cilium says otherwise. The target is --to, else
the newest k3s release of the support matrix (config/data/support_matrix.yaml) that a
supported path reaches, with --cilium or the Cilium line the path needs. Each line is one
`up`; wait for it to finish (the k3s Plan complete: `kubectl -n system-upgrade get plans,jobs`)
before the next. At preview, preflight refuses any
other order (checks/upgrades.py), reading what runs from Hetzner labels: k3s from the servers',
Cilium from the region record's (components/record.py).

Exit codes: 0 steps printed (or none needed), 1 no supported path, 2 usage, stack or config
problem (the message on stderr).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from checks.preflight import parse
from checks.upgrades import LEGACY_CILIUM, NoPathError, Running, Step, path
from checks.versions import notices
from config.errors import SovereignConfigError
from config.models import K3S_VERSION, StackConfig
from config.support import MATRIX, K3sRelease, minor, minor_key
from tools.mockrun import offline_secrets, stack_config
from tools.stacks import PlanError

CILIUM_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


def _k3s_version(value: str) -> str:
    if not K3S_VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: an exact k3s release, e.g. {_newest().version}"
        )
    return value


def _newest() -> K3sRelease:
    return MATRIX.k3s[max(MATRIX.k3s, key=minor_key)]


def _cilium_version(value: str) -> str:
    if not CILIUM_VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r}: a Cilium chart version, e.g. 1.19.6")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./sovereign upgrade-path",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stack", help="the stack whose Pulumi.STACK.yaml pins what runs now")
    parser.add_argument(
        "--to",
        metavar="K3S_VERSION",
        type=_k3s_version,
        help="target k3s release, e.g. v1.35.6+k3s1 (default: the newest one reachable)",
    )
    parser.add_argument(
        "--cilium", metavar="VERSION", type=_cilium_version, help="target Cilium chart version"
    )
    parser.add_argument(
        "--running-cilium",
        metavar="VERSION",
        type=_cilium_version,
        help="the Cilium the region runs, where the file does not say it (default: its "
        f"sovereign:cilium.version, else {LEGACY_CILIUM})",
    )
    parser.add_argument("--dir", metavar="DIR", help="directory of the Pulumi.*.yaml files")
    return parser


def _legacy_supports(k3s: str) -> bool:
    line = MATRIX.cilium.get(minor(LEGACY_CILIUM) or "")
    return line is not None and (minor(k3s) or "") in line.kubernetes


def newest_target(cfg: StackConfig, running: Running, cilium: str | None) -> str:
    """The newest k3s release of the matrix a supported path reaches from `running`."""
    for name in sorted(MATRIX.k3s, key=minor_key, reverse=True):
        if minor_key(name) < minor_key(minor(running.k3s) or "0.0"):
            break
        try:
            path(cfg, running, MATRIX.k3s[name].version, cilium)
        except NoPathError:
            continue
        return MATRIX.k3s[name].version
    return running.k3s


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    stream, errors = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(list(argv) if argv is not None else None)
    directory = Path(args.dir) if args.dir else None
    stack_file = (directory or Path()) / f"Pulumi.{args.stack}.yaml"
    try:
        raw, secret = offline_secrets(stack_config(args.stack, directory))
        cfg = parse(raw, args.stack, secret)
    except (PlanError, SovereignConfigError) as error:
        errors.write(f"./sovereign upgrade-path: {error}\n")
        return 2
    pinned = cast(dict[str, Any], raw.get("cilium") or {}).get("version")
    assumed = ""
    if args.running_cilium:
        running_cilium = str(args.running_cilium)
    elif pinned is None and _legacy_supports(cfg.control_plane.k3s_version):
        # Such a file may predate the key (then the region runs the legacy line) or rely on
        # today's default; the older is the safe guess: its path passes through the newer.
        running_cilium = LEGACY_CILIUM
        assumed = (
            f" (assumed: {stack_file.name} sets no sovereign:cilium.version, as files written "
            f"before the key existed, when every region got Cilium {LEGACY_CILIUM}; a region "
            f"created with today's default runs {cfg.cilium.version}: --running-cilium "
            f"{cfg.cilium.version})"
        )
    else:
        running_cilium = cfg.cilium.version
    running = Running(cfg.control_plane.k3s_version, running_cilium)
    runs = cfg.model_copy(
        update={"cilium": cfg.cilium.model_copy(update={"version": running_cilium})}
    )
    for notice in notices(runs, datetime.datetime.now(datetime.UTC).date()):
        stream.write(f"notice: {notice}\n")
    target = args.to or newest_target(cfg, running, args.cilium)
    try:
        steps = path(cfg, running, target, args.cilium)
    except NoPathError as error:
        errors.write(f"./sovereign upgrade-path: {error}\n")
        return 1
    stream.write(
        f"{args.stack} runs k3s {running.k3s} with Cilium {running.cilium}{assumed} "
        f"({stack_file.name}); target k3s {target}"
        + ("" if args.to else " (the newest release of the support matrix reachable)")
        + (f" with Cilium {args.cilium}" if args.cilium else "")
        + ".\n"
    )
    _write_steps(stream, steps)
    return 0


def _write_steps(stream: TextIO, steps: list[Step]) -> None:
    if not steps:
        stream.write("Nothing to change: the region is there.\n")
        return
    stream.write(
        f"{len(steps)} step(s), one `pulumi up` each, in this order; wait for each to finish "
        "(kubectl -n system-upgrade get plans,jobs) before the next:\n"
    )
    for number, step in enumerate(steps, 1):
        stream.write(f"  {number}. {step.render()}  (then: k3s {step.k3s}, Cilium {step.cilium})\n")


if __name__ == "__main__":
    sys.exit(main())
