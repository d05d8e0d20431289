"""Which Pulumi CLI `./sovereign` uses, and installing the pinned one when there is none.

The real installer downloads (no network here); every decision is driven with fakes: a PATH
lookup, a `pulumi version`, and an installer that writes a `bin/pulumi` where it was told.
"""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tools import pulumi_cli
from tools.pulumi_cli import Cli, CliError, locate

SDK = pulumi_cli.sdk_version()


class FakeInstaller:
    def __init__(self, *, fail: str | None = None, write: bool = True) -> None:
        self.calls: list[tuple[str, Path]] = []
        self.fail = fail
        self.write = write

    def __call__(self, version: str, root: Path) -> None:
        self.calls.append((version, root))
        if self.fail is not None:
            raise RuntimeError(self.fail)
        if self.write:
            binary = root / "bin" / "pulumi"
            binary.parent.mkdir(parents=True)
            binary.write_text("#!/bin/sh\necho v" + version + "\n")


def no_path(_name: str) -> str | None:
    return None


def test_sdk_version_is_the_pinned_requirement() -> None:
    pins = (Path(__file__).resolve().parent.parent / "requirements.txt").read_text()
    assert re.search(rf"^pulumi=={re.escape(SDK)}\b", pins, re.M)


def test_without_any_cli_the_sdks_version_is_installed_into_the_repository(
    tmp_path: Path,
) -> None:
    installer = FakeInstaller()
    said: list[str] = []
    cli = locate(repo=tmp_path, which=no_path, installer=installer, say=said.append)
    root = tmp_path / ".pulumi-cli" / SDK
    assert installer.calls == [(SDK, root)]
    assert cli == Cli(root / "bin" / "pulumi", SDK, installed_now=True)
    assert said[0] == (
        f"the Pulumi CLI is not on PATH: installing {SDK}, the version the pinned SDK goes "
        f"with, into .pulumi-cli/{SDK}/ (git-ignored)"
    )
    assert said[1] == f"installed the Pulumi CLI {SDK}: .pulumi-cli/{SDK}/bin/pulumi"


def test_the_installed_cli_is_reused_without_installing_again(tmp_path: Path) -> None:
    locate(repo=tmp_path, which=no_path, installer=FakeInstaller())
    again = FakeInstaller()
    cli = locate(repo=tmp_path, which=no_path, installer=again)
    assert again.calls == []
    assert cli.path == tmp_path / ".pulumi-cli" / SDK / "bin" / "pulumi"
    assert not cli.installed_now


def test_a_cli_on_path_of_the_same_version_is_used_silently(tmp_path: Path) -> None:
    installer = FakeInstaller()
    said: list[str] = []
    cli = locate(
        repo=tmp_path,
        which=lambda _: "/usr/local/bin/pulumi",
        version_of=lambda _: SDK,
        installer=installer,
        say=said.append,
    )
    assert cli.path == Path("/usr/local/bin/pulumi")
    assert installer.calls == []
    assert said == []


def test_a_cli_on_path_of_another_version_gets_one_line_naming_both(tmp_path: Path) -> None:
    said: list[str] = []
    cli = locate(
        repo=tmp_path,
        which=lambda _: "/opt/pulumi/bin/pulumi",
        version_of=lambda _: "3.100.0",
        installer=FakeInstaller(),
        say=said.append,
    )
    assert cli.version == "3.100.0"
    assert len(said) == 1
    assert "\n" not in said[0]
    assert said[0].startswith(
        f"warning: the Pulumi CLI on PATH is 3.100.0 and the pinned SDK goes with {SDK}"
    )


def test_a_failed_install_says_what_failed_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CliError) as err:
        locate(
            repo=tmp_path,
            which=no_path,
            installer=FakeInstaller(fail="curl: (6) Could not resolve host"),
        )
    assert str(err.value).startswith(
        f"could not install the Pulumi CLI {SDK} into .pulumi-cli/{SDK}/: curl: (6) Could not "
        "resolve host. Install it yourself (https://www.pulumi.com/docs/install/)"
    )
    with pytest.raises(CliError, match="finished but left no"):
        locate(repo=tmp_path, which=no_path, installer=FakeInstaller(write=False))


def test_find_only_never_installs(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="the Pulumi CLI is not installed"):
        locate(repo=tmp_path, which=no_path, installer=None)


def test_the_real_installer_is_the_automation_apis_with_version_and_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pulumi.automation import PulumiCommand

    seen: dict[str, object] = {}

    def fake_install(root: str | None = None, version: object = None) -> None:
        seen.update(root=root, version=str(version))

    monkeypatch.setattr(PulumiCommand, "install", fake_install)
    pulumi_cli.install(SDK, tmp_path / "cli")
    assert seen == {"root": str(tmp_path / "cli"), "version": SDK}


def test_sovereign_up_puts_the_chosen_cli_first_on_path(tmp_path: Path) -> None:
    """`./sovereign up <stack>` runs `pulumi` from where tools.pulumi_cli found it."""
    # A repository copy whose .venv python is a stub printing the CLI path tools.pulumi_cli
    # would choose, and whose CLI records how it was called.
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    root = Path(__file__).resolve().parent.parent
    (repo / "sovereign").write_text((root / "sovereign").read_text())
    (repo / "requirements.txt").write_text("")
    (repo / "Pulumi.primary.yaml").write_text("config: {}\n")
    cli_dir = repo / ".pulumi-cli" / SDK / "bin"
    cli_dir.mkdir(parents=True)
    log = tmp_path / "calls"
    (cli_dir / "pulumi").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    python = repo / ".venv" / "bin" / "python"
    python.write_text(
        '#!/bin/sh\n[ "$1 $2" = "-m tools.pulumi_cli" ] && echo "'
        + str(cli_dir / "pulumi")
        + '"\nexit 0\n'
    )
    for path in (cli_dir / "pulumi", python):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (repo / ".venv" / ".installed-requirements.txt").touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "HCLOUD_TOKEN": "t",
        "PULUMI_BACKEND_URL": "file:///nowhere",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        ["bash", str(repo / "sovereign"), "up", "primary", "--yes"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == [
        "stack select --create --secrets-provider passphrase primary",
        "config get sovereign:hcloudToken --stack primary",
        "up --stack primary --policy-pack policy --yes",
    ]


def test_the_command_prints_the_path_or_says_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulumi_cli, "INSTALL_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pulumi_cli.main(["--find"], io.StringIO()) == 2
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.pulumi_cli", "--help"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 0
    assert "PulumiCommand.install" in proc.stdout
