"""Issue 16 §3: the k3s installer and binary are checked against sha256s pinned in the program.

The rendered install script runs under bash with a stub `curl` (the downloads) and the real
`sha256sum`; the pins come from a patched `render/k3s_downloads.yaml`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from checks.preflight import parse as parse_config
from config.models import StackConfig
from config.support import MATRIX
from render import cloudinit, pins
from tools.mockrun import stack_config

INSTALLER = (
    '#!/bin/sh\necho "installer ran, skip download=$INSTALL_K3S_SKIP_DOWNLOAD" >> "$MARKER"\n'
)
BINARY = "k3s binary bytes\n"
CURL = r"""#!/bin/bash
# Stub curl: writes the file a URL names and logs every call.
out="" url=""
while (($#)); do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    --*) shift; [[ "${1:-}" =~ ^[0-9]+$ ]] && shift ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
echo "$url" >> "$CURL_LOG"
case "$url" in
  */install.sh) printf '%s' "$STUB_INSTALLER" > "$out" ;;
  */k3s|*/k3s-arm64) printf '%s' "$STUB_BINARY" > "$out" ;;
  *) exit 22 ;;
esac
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cfg(**control_plane: Any) -> StackConfig:
    raw = stack_config("primary")
    raw["controlPlane"] = {**raw["controlPlane"], **control_plane}
    return parse_config(raw, "primary")


def with_pins(monkeypatch: pytest.MonkeyPatch, c: StackConfig, installer: Any, binary: Any) -> None:
    version = c.control_plane.k3s_version
    entry = {"source": "test", "checked": "2026-12-04"}
    table = {
        version: {
            "install.sh": {**entry, "sha256": installer},
            "k3s": {**entry, "sha256": binary},
            "k3s-arm64": {**entry, "sha256": binary},
        }
    }
    monkeypatch.setattr(pins, "k3s_download_pins", lambda: table)


def run(c: StackConfig, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    script = cloudinit.install_script(c)
    # The script's absolute paths, moved into the test's directory; the address wait passes.
    script = (
        script.replace(cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH, "true")
        .replace(cloudinit.INSTALLER_PATH, str(tmp_path / "install.sh"))
        .replace(cloudinit.BINARY_DOWNLOAD_PATH, str(tmp_path / "k3s-download"))
        .replace("/usr/local/bin/k3s", str(tmp_path / "installed-k3s"))
    )
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "curl").write_text(CURL)
    (stubs / "sleep").write_text("#!/bin/sh\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    marker, log = tmp_path / "marker", tmp_path / "curl.log"
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "MARKER": str(marker),
        "CURL_LOG": str(log),
        "STUB_INSTALLER": INSTALLER,
        "STUB_BINARY": BINARY,
    }
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, check=False
    )
    return result, marker, log


def test_pinned_downloads_are_verified_then_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = cfg()
    with_pins(monkeypatch, c, sha(INSTALLER), sha(BINARY))
    result, marker, log = run(c, tmp_path)
    assert result.returncode == 0, result.stderr
    # The installer does not fetch the binary again: the verified one is in place.
    assert marker.read_text() == "installer ran, skip download=true\n"
    assert (tmp_path / "installed-k3s").read_text() == BINARY
    urls = log.read_text().split()
    # install.sh from the release tag, never get.k3s.io.
    assert urls == [
        "https://raw.githubusercontent.com/k3s-io/k3s/v1.35.6%2Bk3s1/install.sh",
        "https://github.com/k3s-io/k3s/releases/download/v1.35.6%2Bk3s1/k3s",
    ]


def test_arm_servers_download_the_arm_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = cfg(serverType="cax21")
    with_pins(monkeypatch, c, sha(INSTALLER), sha(BINARY))
    result, _, log = run(c, tmp_path)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split()[1].endswith("/k3s-arm64")


@pytest.mark.parametrize("tampered", ["installer", "binary"])
def test_a_download_that_is_not_the_pinned_bytes_fails_the_boot_with_both_digests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tampered: str
) -> None:
    c = cfg()
    wrong = "0" * 64
    with_pins(
        monkeypatch,
        c,
        wrong if tampered == "installer" else sha(INSTALLER),
        wrong if tampered == "binary" else sha(BINARY),
    )
    result, marker, log = run(c, tmp_path)
    assert result.returncode == 1
    actual = sha(INSTALLER if tampered == "installer" else BINARY)
    assert f"has sha256 {actual}, but the program pins {wrong}: not installing it" in result.stderr
    assert not marker.exists(), "the installer must not run"
    assert not (tmp_path / "installed-k3s").exists()
    # Not retried: a mismatch is not a transient failure.
    assert len(log.read_text().split()) == (1 if tampered == "installer" else 2)


def test_unpinned_downloads_fall_back_to_the_installers_own_check_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c = cfg()
    with_pins(monkeypatch, c, None, None)
    result, marker, log = run(c, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING: no sha256 pinned for https://raw.githubusercontent.com" in result.stderr
    # The installer downloads the binary itself and checks the release's checksum file.
    assert marker.read_text() == "installer ran, skip download=false\n"
    assert len(log.read_text().split()) == 1
    warnings = pins.unpinned(list(cloudinit.k3s_downloads(c)))
    assert len(warnings) == 2
    assert "k3s v1.35.6+k3s1 install.sh" in warnings[0]
    assert "no pinned sha256" in warnings[1]


def test_every_supported_k3s_release_has_an_entry_with_each_download() -> None:
    # Every release `./sovereign upgrade-path` may propose is listed, so none installs unlisted.
    table = pins.k3s_download_pins()
    for release in MATRIX.k3s.values():
        assert set(table[release.version]) == {"install.sh", "k3s", "k3s-arm64"}, release


def test_plan_warns_about_each_unpinned_download_and_image_and_strict_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import io

    from tools import plan

    c = cfg()
    with_pins(monkeypatch, c, None, sha(BINARY))
    out, err = io.StringIO(), io.StringIO()
    code = plan.main(["primary", "--json", str(tmp_path / "p.json")], out, err)
    text = out.getvalue()
    assert "WARNING: k3s v1.35.6+k3s1 install.sh" in text
    assert "server runs it unchecked" in text
    # The pinned binary is not listed; every image without a digest is, Cilium's are pinned.
    assert "k3s v1.35.6+k3s1 k3s (" not in text
    assert "WARNING: image rancher/system-upgrade-controller:" in text
    assert "WARNING: image quay.io/cilium/" not in text
    strict_err = io.StringIO()
    strict = plan.main(
        ["primary", "--json", str(tmp_path / "p.json"), "--strict"], io.StringIO(), strict_err
    )
    # Warnings alone do not fail a plan; --strict does.
    assert (code, strict) == (0, 1)
    assert "--strict:" in strict_err.getvalue()
    assert "are not pinned" in strict_err.getvalue()
