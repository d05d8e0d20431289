"""The config changes that move a region to a supported Kubernetes, one `pulumi up` each.

    ./sovereign upgrade-path STACK [--to K3S_VERSION] [--cilium VERSION] [--dir DIR]

Offline and without credentials: what the region runs is what its committed stack file pins
(`Pulumi.STACK.yaml`), the target is `--to` (default: that file's k3sVersion) with `--cilium` or
the Cilium line the path needs. Each line is one `up`; wait for it to finish (the k3s Plan
complete: `kubectl -n system-upgrade get plans,jobs`) before the next. Preflight refuses any
other order at preview (checks/upgrades.py), reading what runs from the servers' labels.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from checks.preflight import parse
from checks.upgrades import NoPathError, Running, path
from config.errors import SovereignConfigError
from tools.mockrun import stack_config


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    parser = argparse.ArgumentParser(prog="./sovereign upgrade-path", description=__doc__)
    parser.add_argument("stack", help="the stack whose Pulumi.STACK.yaml pins what runs now")
    parser.add_argument("--to", metavar="K3S_VERSION", help="target k3s release, e.g. v1.35.6+k3s1")
    parser.add_argument("--cilium", metavar="VERSION", help="target Cilium chart version")
    parser.add_argument("--dir", metavar="DIR", help="directory of the Pulumi.*.yaml files")
    args = parser.parse_args(list(argv) if argv is not None else None)
    directory = Path(args.dir) if args.dir else None
    stack_file = (directory or Path()) / f"Pulumi.{args.stack}.yaml"
    try:
        cfg = parse(stack_config(args.stack, directory), args.stack)
    except FileNotFoundError:
        stream.write(f"no {stack_file}\n")
        return 2
    except SovereignConfigError as err:
        stream.write(f"{err}\n")
        return 2
    running = Running(cfg.control_plane.k3s_version, cfg.cilium.version)
    target = args.to or running.k3s
    try:
        steps = path(cfg, running, target, args.cilium)
    except NoPathError as err:
        stream.write(f"{err}\n")
        return 1
    stream.write(
        f"{args.stack} runs k3s {running.k3s} with Cilium {running.cilium} "
        f"({stack_file.name}); target k3s {target}"
        + (f" with Cilium {args.cilium}" if args.cilium else "")
        + ".\n"
    )
    if not steps:
        stream.write("Nothing to change: the region is there.\n")
        return 0
    stream.write(
        f"{len(steps)} step(s), one `pulumi up` each, in this order; wait for each to finish "
        "(kubectl -n system-upgrade get plans,jobs) before the next:\n"
    )
    for number, step in enumerate(steps, 1):
        stream.write(f"  {number}. {step.render()}  (then: k3s {step.k3s}, Cilium {step.cilium})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
