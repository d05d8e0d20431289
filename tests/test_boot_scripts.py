"""The rendered k3s install script under real bash (issue 17 §5): the joiner's wait by behaviour.

Stub `curl` and `systemctl` come first on PATH and log each call; `sleep` is an exported bash
function that logs and advances the script's own clock (`SECONDS`), so the 900 s bound runs in
no time and is measured in the script's own seconds. Two absolute paths of the server are
pointed into the test directory: the private-address script (a stub that logs) and the
installer download target (the stub curl writes a fake installer there that logs the
environment the upstream installer would read).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from checks.preflight import parse
from config.models import StackConfig
from render import cloudinit
from render.cloudinit import ServerBoot
from tests.helpers import PUBLIC_IP, TOKEN
from tools.mockrun import stack_config

BASH = shutil.which("bash") or "/bin/bash"

CURL = """#!/bin/sh
case "$*" in
  */cacerts*)
    n=$(($(cat "$STUB_STATE" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$STUB_STATE"
    echo "curl cacerts $n" >>"$STUB_LOG"
    if [ -n "$ANSWER_AFTER" ] && [ "$n" -gt "$ANSWER_AFTER" ]; then exit 0; fi
    exit 7 ;;
esac
out=""; prev=""
for arg in "$@"; do [ "$prev" = "-o" ] && out=$arg; prev=$arg; done
echo "curl download" >>"$STUB_LOG"
cat >"$out" <<'INSTALLER'
echo "installer version=$INSTALL_K3S_VERSION exec=$INSTALL_K3S_EXEC skip_start=$INSTALL_K3S_SKIP_START skip_enable=$INSTALL_K3S_SKIP_ENABLE" >>"$STUB_LOG"
INSTALLER
"""
LOGGING_STUB = '#!/bin/sh\necho "{name} $*" >>"$STUB_LOG"\n'
SLEEP = '() {  echo "sleep $1" >>"$STUB_LOG"; SECONDS=$((SECONDS + $1)); }'


def install_script(c: StackConfig, node: int, boot: ServerBoot | None = None) -> str:
    doc = yaml.safe_load(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN, boot))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    return files[cloudinit.INSTALL_SCRIPT_PATH]


def run(tmp_path: Path, script: str, answer_after: int | None) -> tuple[int, str, list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    (stubs / "curl").write_text(CURL)
    for name in ("systemctl", "address"):
        (stubs / name).write_text(LOGGING_STUB.format(name=name))
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    installer = tmp_path / "k3s-install.sh"
    # The server's two absolute paths, and only those, point into the test directory.
    assert script.count(cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH) == 1
    assert script.count(f"installer={cloudinit.INSTALLER_PATH}\n") == 1
    script = script.replace(cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH, str(stubs / "address"))
    script = script.replace(f"installer={cloudinit.INSTALLER_PATH}\n", f"installer={installer}\n")
    path = tmp_path / "sovereign-k3s-install"
    path.write_text(script)
    done = subprocess.run(
        [BASH, str(path)],
        env={
            "PATH": f"{stubs}:{os.environ['PATH']}",
            "STUB_LOG": str(log),
            "STUB_STATE": str(tmp_path / "answers"),
            "ANSWER_AFTER": "" if answer_after is None else str(answer_after),
            "BASH_FUNC_sleep%%": SLEEP,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stderr, calls


def secondary() -> StackConfig:
    return parse(stack_config("secondary"), "secondary")


def test_a_joiner_waits_for_an_answer_before_it_installs(tmp_path: Path) -> None:
    c = secondary()
    status, stderr, calls = run(tmp_path, install_script(c, 1), answer_after=3)
    assert status == 0, stderr
    version = c.control_plane.k3s_version
    assert calls == [
        "address ",
        "curl cacerts 1",
        "sleep 10",
        "curl cacerts 2",
        "sleep 10",
        "curl cacerts 3",
        "sleep 10",
        "curl cacerts 4",
        "curl download",
        f"installer version={version} exec=server skip_start=false skip_enable=false",
    ]
    join = cloudinit.join_url(c)
    assert f"sovereign-k3s-install: {join} answers; joining" in stderr


def test_a_joiner_gives_up_after_the_bound_with_the_reason(tmp_path: Path) -> None:
    c = secondary()
    status, stderr, calls = run(tmp_path, install_script(c, 2), answer_after=None)
    assert status == 1
    waited = sum(int(call.split()[1]) for call in calls if call.startswith("sleep "))
    tries = [call for call in calls if call.startswith("curl cacerts")]
    # One try at 0 s and every 10 s up to the bound, then the message: 91 tries, 900 s.
    assert waited == cloudinit.JOIN_WAIT_SECONDS == 900
    assert len(tries) == cloudinit.JOIN_WAIT_SECONDS // 10 + 1
    assert "curl download" not in calls
    assert not any(call.startswith("installer") for call in calls)
    assert (
        f"sovereign-k3s-install: FAILED: {cloudinit.join_url(c)} did not answer for 900s: the "
        "server this one joins (cp-1, or the API load balancer in front of it) is not up"
    ) in stderr


def test_the_server_that_starts_the_cluster_waits_for_nobody(tmp_path: Path) -> None:
    status, stderr, calls = run(tmp_path, install_script(secondary(), 0), answer_after=None)
    assert status == 0, stderr
    assert [call.split()[0] for call in calls] == ["address", "curl", "installer"]


def test_a_restoring_server_installs_k3s_neither_started_nor_enabled(tmp_path: Path) -> None:
    # The restore gate (tests/test_day2.py runs the restore script itself under bash) relies on
    # the install step leaving k3s stopped and disabled: the installer's environment says so.
    raw = stack_config("primary")
    raw |= {
        "controlPlane": {**raw["controlPlane"], "allowReplacement": True},
        "backups": {"enabled": True, "bucket": "omantel-etcd"},
        "replacement": {"server": "cp-1", "restoreSnapshot": "etcd-snapshot-cp-1-1700000000"},
        "backupsAccessKey": "AKIA-restore",
        "backupsSecretKey": "restore-secret",
    }
    c = parse(raw, "primary", secret_keys=frozenset({"backupsAccessKey", "backupsSecretKey"}))
    boot = ServerBoot(mode="restore", restore_credentials=("AKIA-restore", "restore-secret"))
    status, stderr, calls = run(tmp_path, install_script(c, 0, boot), answer_after=None)
    assert status == 0, stderr
    assert calls[-1].endswith("exec=server skip_start=true skip_enable=true")
    assert not any(call.startswith("systemctl") for call in calls)
