"""Foundations (issue 17 §6): the SDK mockrun was checked against, the plugin versions every
registration asks for, the Python the tools need."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest

from tools import mockrun
from tools.mockrun import Run

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    # `name==version`, alone on its line or followed by ` \` and its hashes.
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s\\]+)", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_mockrun_names_the_sdk_version_when_its_internals_move() -> None:
    assert mockrun.sdk_check() == ""
    assert pins()["pulumi"] == mockrun.CHECKED_SDK


def test_the_sdk_check_fails_naming_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mockrun.pulumi_resource, "_get_stack_trace")
    monkeypatch.setattr(mockrun, "CHECKED_SDK", "3.1.0")
    message = mockrun.sdk_check()
    installed = importlib.metadata.version("pulumi")
    assert message.startswith(
        f"tools/mockrun.py was checked against the Pulumi SDK 3.1.0, and pulumi {installed} is "
        "installed. Moved or missing: pulumi.runtime.resource._get_stack_trace"
    )


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_every_resource_asks_for_the_plugin_version_its_pinned_sdk_implies(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(stack)
    pinned = pins()
    packages: set[str] = set()
    for reg in run.registrations:
        if not reg.custom:
            continue
        package = (
            reg.type.split(":")[2]
            if reg.type.startswith("pulumi:providers:")
            else reg.type.split(":")[0]
        )
        packages.add(package)
        assert reg.version == pinned[f"pulumi-{package}"], (reg.type, reg.name, reg.version)
    assert {"hcloud", "kubernetes", "random", "tls", "command"} <= packages


def test_sovereign_refuses_a_python_without_tarfile_data_filter(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        # Debian 12's interpreter: 3.11.2, before tarfile.data_filter (3.11.4).
        'case "$*" in *version_info*) exit 1 ;; -V) echo "Python 3.11.2" ;; esac\n'
        "touch venv-attempted\n"
    )
    fake.chmod(0o755)
    # A checkout without .venv: the script runs from its own directory.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "sovereign").write_bytes((ROOT / "sovereign").read_bytes())
    (checkout / "sovereign").chmod(0o755)
    proc = subprocess.run(
        [str(checkout / "sovereign"), "plan", "primary"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(fake), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"sovereign needs Python 3.11.4 or newer (tarfile.data_filter); {fake} is Python 3.11.2: "
        "set PYTHON to a newer python3\n"
    )
    assert not (tmp_path / "venv-attempted").exists()
    assert not (checkout / ".venv").exists()
