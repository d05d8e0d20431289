"""Issue 16 §2: host-network pods cannot read user_data (CA keys, k3s token) from the metadata
service; only the host's services and the CCM can."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.models import StackConfig
from render import cloudinit, metadata_fence
from tests.helpers import TOKEN, cfg, system_tool


def user_data(c: StackConfig, node: int, boot: cloudinit.ServerBoot | None = None) -> Any:
    return yaml.safe_load(cloudinit.render_user_data(c, node, "198.51.100.7", TOKEN, boot))


def files(doc: Any) -> dict[str, str]:
    return {f["path"]: f["content"] for f in doc["write_files"]}


def verdict(rules: str, cgroup: str, uid: int, daddr: str = "169.254.169.254") -> str:
    """What the rendered ruleset does to a packet from a socket in `cgroup` owned by `uid`."""
    if f"ip daddr {daddr} jump metadata" not in rules:
        return "accept"  # the output chain's policy
    chain = rules[rules.index("chain metadata {") :]
    for line in chain.splitlines()[1:]:
        rule = line.strip()
        if rule == "}":
            return "accept"
        cg = re.fullmatch(r'socket cgroupv2 level (\d+) "([^"]+)" accept', rule)
        if cg and "/".join(cgroup.split("/")[: int(cg[1])]) == cg[2]:
            return "accept"
        owner = re.fullmatch(r"meta skuid (\d+) accept", rule)
        if owner and int(owner[1]) == uid:
            return "accept"
        if rule.endswith("reject with icmpx type admin-prohibited"):
            return "reject"
        if not (cg or owner):
            # A rule this reading does not know could change the verdict: refuse to guess.
            raise AssertionError(f"verdict() cannot judge the rule {rule!r}; teach it first")
    return "accept"


# (socket's cgroup v2 path, uid, expected). Containers live under the kubelet's kubepods
# hierarchy (cgroupfs driver: kubepods/..., systemd driver: kubepods.slice/...) whether or not
# they use the host's network namespace.
CASES = [
    ("system.slice/cloud-init.service", 0, "accept"),
    ("system.slice/cloud-final.service", 0, "accept"),
    ("system.slice/k3s.service", 0, "accept"),  # ExecStartPre: sovereign-private-address
    ("kubepods/burstable/pod1/cilium-agent", 0, "reject"),  # host network, root
    ("kubepods/besteffort/pod2/system-upgrade-controller", 0, "reject"),
    ("kubepods.slice/kubepods-burstable.slice/cri-containerd-3.scope", 0, "reject"),
    ("kubepods/burstable/pod4/hcloud-ccm", metadata_fence.CCM_UID, "accept"),
    # The CCM chart's own uid (values.yaml podSecurityContext.runAsUser): only CCM_UID passes,
    # which slot 04 sets (tests/test_hcloud.py reads it back from the rendered pod).
    ("kubepods/burstable/pod4/hcloud-ccm", 65532, "reject"),
    # The CSI node plugin is on the pod network: the host fence never sees it, and a host
    # process with its name gets nothing.
    ("kubepods/burstable/pod6/hcloud-csi-node", 0, "reject"),
    ("user.slice/user-0.slice/session-1.scope", 0, "reject"),  # an SSH shell: sudo systemd-run
]


@pytest.mark.parametrize(("cgroup", "uid", "expected"), CASES)
def test_only_host_services_and_the_ccm_reach_the_metadata(
    cgroup: str, uid: int, expected: str
) -> None:
    rules = files(user_data(cfg("primary"), 0))[metadata_fence.FENCE_RULES_PATH]
    assert verdict(rules, cgroup, uid) == expected
    # Other destinations are not the fence's business.
    assert verdict(rules, cgroup, uid, daddr="10.0.1.3") == "accept"


def test_the_fence_hooks_the_hosts_output_path() -> None:
    rules = metadata_fence.fence_rules()
    # Host-network pods share the host's network namespace: their packets leave through the
    # host's output hook, which this chain is on, before any routing decision.
    assert "type filter hook output priority filter; policy accept;" in rules
    assert rules.count(" accept\n") == 2  # system.slice and the CCM's uid, nothing else
    assert "kubepods" not in rules


def test_every_server_loads_the_fence_before_k3s_at_every_boot() -> None:
    c = cfg("secondary")
    worst = [cloudinit.worst_case_boot(c, n) for n in range(3)]
    for node in range(3):
        for boot in (None, worst[node]):
            doc = user_data(c, node, boot)
            written = files(doc)
            assert written[metadata_fence.FENCE_RULES_PATH] == metadata_fence.fence_rules()
            unit = written[metadata_fence.FENCE_UNIT_PATH]
            assert f"ExecStart=/usr/sbin/nft -f {metadata_fence.FENCE_RULES_PATH}" in unit
            # Before k3s on every boot, and k3s does not start without it.
            assert "Before=network-pre.target k3s.service" in unit
            assert "RequiredBy=k3s.service" in unit
            assert "cloud-final" not in unit
            assert "nftables" in doc["packages"]
            # Enabled (every later boot) and started (this one) before k3s is installed.
            enable = ["systemctl", "enable", "--now", metadata_fence.FENCE_UNIT]
            assert doc["runcmd"].index(enable) == len(doc["runcmd"]) - 2


def test_the_rendered_ruleset_passes_nft_check(tmp_path: Path) -> None:
    nft = system_tool("nft")
    path = tmp_path / "fence.nft"
    path.write_text(metadata_fence.fence_rules())
    # nft resolves a cgroupv2 path when it parses the rule; a private mount namespace gives it
    # the cgroup v2 root a server has (system.slice exists from systemd's start).
    script = (
        "mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/system.slice && "
        f"{nft} -c -f {path}"
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
