"""k3s cloud-init: flags, CIDRs per region index, one API endpoint model, size cap, schema."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.preflight import parse as parse_config
from config.models import StackConfig
from render import cloudinit
from render.cilium import cilium_values
from tools.mockrun import evaluate, stack_config

TOKEN = "T" * cloudinit.K3S_TOKEN_LENGTH
PUBLIC_IP = "198.51.100.7"


def cfg(stack: str = "primary", **overrides: Any) -> StackConfig:
    raw = stack_config(stack)
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw, stack)


def k3s(c: StackConfig, node: int = 0) -> dict[str, Any]:
    doc = yaml.safe_load(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN))
    config = next(f for f in doc["write_files"] if f["path"] == cloudinit.K3S_CONFIG_PATH)
    return yaml.safe_load(config["content"])


def test_user_data_is_cloud_config_yaml() -> None:
    text = cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) == {"write_files", "runcmd"}


def test_k3s_runs_without_flannel_kube_proxy_or_network_policy() -> None:
    flags = k3s(cfg())
    assert flags["flannel-backend"] == "none"
    assert flags["disable-network-policy"] is True
    assert flags["disable-kube-proxy"] is True
    assert flags["disable"] == ["traefik", "servicelb"]
    assert "local-storage" not in flags["disable"], "local-path is the vCluster PVCs' class"
    assert not any("cloud-provider" in key for key in flags)
    assert "kubelet-arg" not in flags, "no cloud-provider=external taint: it would deadlock Cilium"


def test_k3s_version_is_pinned_in_the_installer() -> None:
    doc = yaml.safe_load(cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN))
    install = doc["runcmd"][-1]
    assert "INSTALL_K3S_VERSION=v1.31.4+k3s1" in install
    assert "INSTALL_K3S_EXEC=server" in install


def test_node_addresses_and_labels() -> None:
    flags = k3s(cfg("secondary"), node=1)
    assert flags["node-ip"] == "10.0.1.3"
    assert flags["advertise-address"] == "10.0.1.3"
    assert flags["node-external-ip"] == PUBLIC_IP
    # HA: the API load balancer's private address too (its public one once it is known).
    assert flags["tls-san"] == ["omantel.openova.io", PUBLIC_IP, "10.0.1.253"]
    assert flags["node-label"] == [
        "openova.io/region=omantel-hel1-2",
        "catalyst.openova.io/role=control-plane",
    ]


def test_first_server_initialises_etcd_and_the_others_join_it() -> None:
    c = cfg("secondary")
    first, second, third = (k3s(c, n) for n in range(3))
    assert first["cluster-init"] is True
    assert "server" not in first
    for joiner in (second, third):
        # Through the API load balancer, which reaches whichever servers are healthy.
        assert joiner["server"] == "https://10.0.1.253:6443"
        assert "cluster-init" not in joiner
        assert joiner["token"] == TOKEN


@pytest.mark.parametrize(
    ("index", "pods", "services", "dns"),
    [
        (0, "10.42.0.0/16", "10.96.0.0/16", "10.96.0.10"),
        (1, "10.43.0.0/16", "10.97.0.0/16", "10.97.0.10"),
        (7, "10.49.0.0/16", "10.103.0.0/16", "10.103.0.10"),
    ],
)
def test_cidrs_follow_the_region_index(index: int, pods: str, services: str, dns: str) -> None:
    role = "primary" if index == 0 else "secondary"
    c = cfg(role, region={"index": index})
    flags = k3s(c)
    assert (flags["cluster-cidr"], flags["service-cidr"], flags["cluster-dns"]) == (
        pods,
        services,
        dns,
    )


def test_cidrs_per_index_reach_the_servers_under_mocks() -> None:
    run = evaluate("secondary", {"region": {"index": 5}})
    assert run.error is None, run.error
    doc = yaml.safe_load(run.of_type("hcloud:index/server:Server")[0].inputs["userData"])
    flags = yaml.safe_load(
        next(f for f in doc["write_files"] if f["path"] == cloudinit.K3S_CONFIG_PATH)["content"]
    )
    assert flags["cluster-cidr"] == "10.47.0.0/16"
    assert flags["service-cidr"] == "10.101.0.0/16"


def test_api_endpoint_feeds_both_k3s_and_cilium() -> None:
    single, ha = cfg("primary"), cfg("secondary")
    assert cloudinit.api_endpoint(single) == cloudinit.ApiEndpoint("10.0.1.2", 6443)
    assert cloudinit.api_endpoint(ha) == cloudinit.ApiEndpoint("127.0.0.1", 6444)
    for c in (single, ha):
        values, flags = cilium_values(c), k3s(c)
        endpoint = (values["k8sServiceHost"], values["k8sServicePort"])
        assert endpoint != ("127.0.0.1", 6443), "workers have no API server on 127.0.0.1:6443"
        if c.control_plane.count == 1:
            assert values["k8sServiceHost"] == flags["advertise-address"]


def test_sshd_is_hardened_and_sorts_before_cloud_init_defaults() -> None:
    doc = yaml.safe_load(cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN))
    sshd = next(f for f in doc["write_files"] if f["path"].startswith("/etc/ssh/sshd_config.d/"))
    assert Path(sshd["path"]).name < "50-cloud-init.conf"
    assert "PasswordAuthentication no" in sshd["content"]
    assert "PermitRootLogin prohibit-password" in sshd["content"]


def test_operator_keys_are_appended_not_hetzner_ssh_keys() -> None:
    doc = yaml.safe_load(cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN))
    keys = next(f for f in doc["write_files"] if f["path"] == "/root/.ssh/authorized_keys")
    assert keys["append"] is True
    assert keys["content"].startswith("ssh-ed25519 ")


def test_registry_mirror_is_optional() -> None:
    def paths(c: StackConfig) -> list[str]:
        doc = yaml.safe_load(cloudinit.render_user_data(c, 0, PUBLIC_IP, TOKEN))
        return [f["path"] for f in doc["write_files"]]

    assert cloudinit.REGISTRIES_PATH not in paths(cfg())
    mirrored = cfg(registryMirror={"enabled": True})
    assert cloudinit.REGISTRIES_PATH in paths(mirrored)
    assert cloudinit.registries(mirrored)["mirrors"]["ghcr.io"] == {
        "endpoint": ["https://harbor.openova.io"],
        "rewrite": {"^(.*)$": "proxy-ghcr/$1"},
    }


def test_user_data_stays_under_hetzners_cap_with_room_to_spare() -> None:
    for stack in ("primary", "secondary"):
        c = cfg(stack)
        for node in range(c.control_plane.count):
            size = len(cloudinit.render_user_data(c, node, "255.255.255.255", TOKEN).encode())
            assert size < cloudinit.USER_DATA_CAP / 4


def test_user_data_over_the_cap_is_refused_at_preview_with_its_size() -> None:
    key = "ssh-rsa " + "A" * 1900 + " op"
    run = evaluate("primary", {"access": {"sshPublicKeys": [key] * 18}})
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:controlPlane (server 1 user_data)" in message
    assert "at most 32768 bytes (Hetzner's user_data cap)" in message
    assert " bytes: at most" in message


CLOUD_INIT = shutil.which("cloud-init")


def test_user_data_passes_cloud_inits_own_schema(tmp_path: Path) -> None:
    if CLOUD_INIT is None:
        if os.environ.get("CI"):
            pytest.fail("cloud-init is not installed; .ci/run installs Debian's cloud-init")
        pytest.skip("cloud-init not installed here (CI installs it and runs this)")
    for stack in ("primary", "secondary"):
        c = cfg(stack, registryMirror={"enabled": True})
        for node in range(c.control_plane.count):
            path = tmp_path / f"{stack}-{node}.yaml"
            path.write_text(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN))
            result = subprocess.run(
                [CLOUD_INIT, "schema", "--config-file", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
