"""What several test files share: a committed stack's parsed config with overrides, the
system tools that check rendered artefacts, and the API-wait script's environment and clock."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from checks.preflight import parse
from config.models import StackConfig
from render.cloudinit import K3S_TOKEN_LENGTH
from tools.mockrun import stack_config

# Stand-ins for what the program mints or Hetzner assigns, as boot renderers take them.
TOKEN = "T" * K3S_TOKEN_LENGTH
PUBLIC_IP = "198.51.100.7"


def cfg(stack: str = "primary", **overrides: Any) -> StackConfig:
    """The committed stack's config, each override merged into its top-level key."""
    raw = stack_config(stack)
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse(raw, stack)


# Command -> the Debian package that ships it (.ci/run installs each one it does not find).
SYSTEM_TOOLS = {"cloud-init": "cloud-init", "nft": "nftables", "shellcheck": "shellcheck"}


def system_tool(name: str) -> str:
    """The path of `name`; a test that needs it fails, never skips, when it is missing: the
    project forbids skips, and a missing checker must not turn a red check green."""
    path = shutil.which(name)
    if path is None:
        package = SYSTEM_TOOLS[name]
        pytest.fail(
            f"`{name}` is not installed: this test runs it on the rendered artefact. Install "
            f"Debian's {package} (`apt-get install {package}`), as .ci/run does.",
            pytrace=False,
        )
    return path


def assert_cloud_init_schema(text: str, path: Path) -> None:
    """cloud-init's own `schema` check of user_data `text` (written to `path`) passes."""
    path.write_text(text)
    result = subprocess.run(
        [system_tool("cloud-init"), "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def assert_shellcheck_clean(text: str, path: Path) -> None:
    """shellcheck at style severity finds nothing in the script `text` (written to `path`)."""
    path.write_text(text)
    result = subprocess.run(
        [system_tool("shellcheck"), "--severity=style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def wait_env(**over: str) -> dict[str, str]:
    """The environment the boot's API wait (render/wait_for_api.py) runs with, for two servers."""
    return {
        "SOVEREIGN_API": "https://127.0.0.1:9",
        "SOVEREIGN_CA": "",
        "SOVEREIGN_CERT": "",
        "SOVEREIGN_KEY": "",
        "SOVEREIGN_NODES": "omantel-hel1-2-cp-1,omantel-hel1-2-cp-2",
        "SOVEREIGN_NODE_IPS": "198.51.100.1,198.51.100.2",
        "SOVEREIGN_TIMEOUT": "12",
        **over,
    }


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def set_cluster_tokens(directory: Path) -> None:
    """Give every stack file of `directory` its `sovereign:hcloudToken`, as
    `pulumi config set --secret` writes it (a `secure:` value): what `up` needs in each."""
    import yaml

    for path in directory.glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["config"]["sovereign:hcloudToken"] = {"secure": "v1:c2FsdA==:Y2lwaGVydGV4dA=="}
        path.write_text(yaml.safe_dump(doc))
