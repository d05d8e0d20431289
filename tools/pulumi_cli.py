"""Which Pulumi CLI `./sovereign` drives, installing the pinned one when there is none.

    python -m tools.pulumi_cli            print the CLI's path (messages on stderr)
    python -m tools.pulumi_cli --find     the same, but never install (exit 2 without one)

The Automation API and the `pulumi-language-python` host that runs this program must match the
SDK pinned in requirements.txt; the version that goes with it is the SDK's own
(`pulumi._version`). The order:

1. the copy this repository installed before, `.pulumi-cli/<version>/bin/pulumi` (git-ignored);
2. a `pulumi` on PATH; one of another version gets a one-line warning naming both versions;
3. none: the Automation API's `PulumiCommand.install(version=..., root=...)` fetches exactly
   the SDK's version into `.pulumi-cli/<version>/`, and the message says where it went.

That install runs Pulumi's install script as served, with no digest pinned here (the SDK pins
none either); docs/security.md, "The Pulumi CLI and its plugins", says what an operator who
needs more does instead (a verified CLI on PATH, plugins pre-installed with --checksum).

The decision is `locate`, a pure function of what it is given (the PATH lookup, the version
of a binary, the installer): the tests drive it with fakes, the command with the real ones.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from tools.stacks import ROOT

INSTALL_DIR: Final = ".pulumi-cli"
DOCS: Final = "https://www.pulumi.com/docs/install/"


def sdk_version() -> str:
    """The version of the pinned Pulumi SDK, which the CLI must match."""
    from pulumi._version import version  # pyright: ignore[reportPrivateUsage]

    return str(version)


class CliError(Exception):
    """No usable CLI: the message says what to do (printed without a traceback)."""


@dataclass(frozen=True, slots=True)
class Cli:
    path: Path
    version: str
    installed_now: bool = False

    @property
    def root(self) -> Path:
        """The directory above `bin/pulumi` (what `PulumiCommand(root=...)` takes)."""
        return self.path.parent.parent


Which = Callable[[str], str | None]
VersionOf = Callable[[Path], str]
Installer = Callable[[str, Path], None]


def version_of(binary: Path) -> str:
    """`pulumi version` prints `v3.272.0`."""
    proc = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        return "unknown"
    return proc.stdout.strip().removeprefix("v")


def install(version: str, root: Path) -> None:
    """The Automation API's installer: Pulumi's install script for exactly `version`."""
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

    PulumiCommand.install(root=str(root), version=VersionInfo.parse(version))


def local_root(repo: Path, version: str) -> Path:
    return repo / INSTALL_DIR / version


def _shown(path: Path, repo: Path) -> str:
    try:
        return str(path.relative_to(repo))
    except ValueError:
        return str(path)


def locate(
    *,
    repo: Path = ROOT,
    wanted: str | None = None,
    which: Which = shutil.which,
    version_of: VersionOf = version_of,
    installer: Installer | None = install,
    say: Callable[[str], None] = lambda _: None,
) -> Cli:
    """The CLI to use; `installer=None` only finds one. Raises `CliError` without one."""
    version = wanted or sdk_version()
    local = local_root(repo, version) / "bin" / "pulumi"
    if local.is_file():
        return Cli(local, version)
    found = which("pulumi")
    if found is not None:
        path = Path(found)
        have = version_of(path)
        if have != version:
            say(
                f"warning: the Pulumi CLI on PATH is {have} and the pinned SDK goes with "
                f"{version}; using {found} (remove it from PATH and ./sovereign installs "
                f"{version} into {INSTALL_DIR}/)"
            )
        return Cli(path, have)
    if installer is None:
        raise CliError(
            f"the Pulumi CLI is not installed: not on PATH and not in {INSTALL_DIR}/{version}/. "
            f"`./sovereign up <stack>` installs {version} there, or install it yourself ({DOCS})"
        )
    root = local_root(repo, version)
    say(
        f"the Pulumi CLI is not on PATH: installing {version}, the version the pinned SDK "
        f"goes with, into {_shown(root, repo)}/ (git-ignored)"
    )
    try:
        installer(version, root)
    except Exception as err:  # the installer's failures are many (network, disk, script)
        raise CliError(
            f"could not install the Pulumi CLI {version} into {_shown(root, repo)}/: "
            f"{str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}. "
            f"Install it yourself ({DOCS}) and run again"
        ) from None
    if not local.is_file():
        raise CliError(
            f"the Pulumi CLI installer finished but left no {_shown(local, repo)}; install it "
            f"yourself ({DOCS}) and run again"
        )
    say(f"installed the Pulumi CLI {version}: {_shown(local, repo)}")
    return Cli(local, version, installed_now=True)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pulumi_cli", description=__doc__)
    parser.add_argument("--find", action="store_true", help="never install; exit 2 without one")
    args = parser.parse_args(argv)
    stdout = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        cli = locate(installer=None if args.find else install, say=say)
    except CliError as err:
        say(str(err))
        return 2
    stdout.write(f"{cli.path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
