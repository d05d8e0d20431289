"""What several test files share: the system tools that check rendered artefacts, and the
API-wait script's environment and clock."""

from __future__ import annotations

import shutil

import pytest

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
