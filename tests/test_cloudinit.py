"""k3s cloud-init: flags, CIDRs per region index, one API endpoint model, size cap, schema."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.models import StackConfig
from render import cloudinit
from render.cilium import cilium_values
from tests.helpers import (
    PUBLIC_IP,
    TOKEN,
    assert_cloud_init_schema,
    assert_shellcheck_clean,
    cfg,
)
from tools.mockrun import evaluate


def k3s(c: StackConfig, node: int = 0) -> dict[str, Any]:
    doc = yaml.safe_load(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN))
    config = next(f for f in doc["write_files"] if f["path"] == cloudinit.K3S_CONFIG_PATH)
    return yaml.safe_load(config["content"])


def test_user_data_is_cloud_config_yaml() -> None:
    text = cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN)
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) == {"packages", "write_files", "runcmd"}


def test_k3s_runs_without_flannel_kube_proxy_or_network_policy() -> None:
    flags = k3s(cfg())
    assert flags["flannel-backend"] == "none"
    assert flags["disable-network-policy"] is True
    assert flags["disable-kube-proxy"] is True
    assert flags["disable"] == ["traefik", "servicelb"]
    assert "local-storage" not in flags["disable"], "local-path stays selectable"
    assert not any("cloud-provider" in key for key in flags)


def written(c: StackConfig, node: int, path: str) -> dict[str, Any]:
    doc = yaml.safe_load(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN))
    return next(f for f in doc["write_files"] if f["path"] == path)


def test_k3s_version_is_pinned_in_the_installer() -> None:
    script = written(cfg(), 0, cloudinit.INSTALL_SCRIPT_PATH)["content"]
    assert "\nversion=v1.35.6+k3s1\n" in script
    assert (
        'INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC=server \\\n'
        "    INSTALL_K3S_SKIP_DOWNLOAD=false \\\n"
        '    INSTALL_K3S_SKIP_START=false INSTALL_K3S_SKIP_ENABLE=false \\\n    sh "$installer"'
        in script
    )


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
    assert cloudinit.api_endpoint(ha) == cloudinit.ApiEndpoint("10.0.1.253", 6443)
    for c in (single, ha):
        values, flags = cilium_values(c), k3s(c)
        endpoint = (values["k8sServiceHost"], values["k8sServicePort"])
        for kind in ("server", "agent"):
            assert endpoint in cloudinit.reachable_api(c, kind)
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
            # Half: the CA files (cp-1), a restore and a registry password come on top
            # (the worst case, checked at preview).
            assert size < cloudinit.USER_DATA_CAP / 2
        for pool in c.workers:
            size = len(cloudinit.render_agent_user_data(c, pool, TOKEN, "x" * 128).encode())
            assert size < cloudinit.USER_DATA_CAP / 3


def test_user_data_over_the_cap_is_refused_at_preview_with_its_size() -> None:
    key = "ssh-rsa " + "A" * 1900 + " op"
    run = evaluate("primary", {"access": {"sshPublicKeys": [key] * 18}})
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:controlPlane (server 1 user_data)" in message
    assert "at most 32768 bytes (Hetzner's user_data cap)" in message
    assert " bytes: at most" in message


def test_user_data_passes_cloud_inits_own_schema(tmp_path: Path) -> None:
    for stack in ("primary", "secondary"):
        c = cfg(stack, registryMirror={"enabled": True})
        for node in range(c.control_plane.count):
            assert_cloud_init_schema(
                cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN),
                tmp_path / f"{stack}-{node}.yaml",
            )


# A boot that cannot wedge: the private address is waited for (bounded), configured by MAC if
# it never comes, and k3s is installed with bounded retries; every failure says what it was.


def test_runcmd_installs_k3s_only_through_the_bounded_boot_script() -> None:
    doc = yaml.safe_load(cloudinit.render_user_data(cfg(), 0, PUBLIC_IP, TOKEN))
    # Last, so its exit status is runcmd's and a failed boot shows as cloud-init "error".
    assert doc["runcmd"][-1] == [cloudinit.INSTALL_SCRIPT_PATH]
    assert not any("get.k3s.io" in " ".join(cmd) for cmd in doc["runcmd"])
    script = written(cfg(), 0, cloudinit.INSTALL_SCRIPT_PATH)
    assert script["permissions"] == "0700"
    text = script["content"]
    # The address wait runs, and fails the install, before anything is downloaded.
    wait = text.index(f"{cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH} || {{")
    assert wait < text.index("download()")
    assert "FAILED: k3s not installed: no private address" in text


def test_each_server_waits_for_its_own_private_address() -> None:
    c = cfg("secondary")
    for node, ip in enumerate(c.control_plane_ips):
        script = written(c, node, cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH)["content"]
        assert f"\naddress={ip}\n" in script


def test_private_address_waits_are_bounded_and_fail_clearly() -> None:
    script = written(cfg(), 0, cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH)["content"]
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    assert f"if wait_for_address {cloudinit.ADDRESS_WAIT_SECONDS}; then" in script
    assert f"deadline=$((SECONDS + {cloudinit.METADATA_WAIT_SECONDS}))" in script
    assert f"deadline=$((SECONDS + {cloudinit.NIC_WAIT_SECONDS}))" in script
    assert f"wait_for_address {cloudinit.DHCP_WAIT_SECONDS} || fail" in script
    # Every loop ends at a deadline; curl calls have their own timeouts.
    loops = [line.strip() for line in script.splitlines() if line.strip().startswith("while")]
    assert len(loops) == 3
    assert all(line == "while ((SECONDS < deadline)); do" for line in loops)
    assert "until " not in script
    assert "--max-time 5" in script
    for message in (
        "lists no \\\nprivate network with ${address}",
        "no network interface has MAC ${mac}, the private \\\nNIC of ${address}",
        "still has no ${address}",
        "neither netplan nor dhclient is installed",
    ):
        assert message in script
    assert 'fail() { log "FAILED: $*"; exit 1; }' in script


def test_fallback_configures_the_nic_matched_by_mac_from_hetzner_metadata() -> None:
    script = written(cfg(), 0, cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH)["content"]
    assert f"metadata={cloudinit.PRIVATE_NETWORKS_URL}" in script
    assert 'if [[ "$(cat "$dev/address" 2>/dev/null)" == "$1" ]]; then' in script
    assert """"        macaddress: \\"${mac}\\"" '      dhcp4: true' >/etc/netplan/""" in script
    assert 'dhclient -1 -4 "$nic"' in script


METADATA = """\
- ip: 10.0.1.2
  alias_ips: []
  interface_num: 1
  mac_address: 86:00:00:AA:BB:01
  network_id: 1234
  network: 10.0.0.0/16
  subnet: 10.0.1.0/24
  gateway: 10.0.0.1
- alias_ips:
  - 10.0.1.200
  ip: "10.0.1.3"
  mac_address: 86:00:00:aa:bb:02
"""


@pytest.mark.parametrize(
    ("address", "mac"),
    [("10.0.1.2", "86:00:00:aa:bb:01"), ("10.0.1.3", "86:00:00:aa:bb:02"), ("10.0.1.4", "")],
)
def test_the_mac_is_read_from_the_metadata_item_holding_the_servers_address(
    tmp_path: Path, address: str, mac: str
) -> None:
    awk = shutil.which("awk")
    assert awk is not None
    (tmp_path / "private-networks").write_text(METADATA)
    result = subprocess.run(
        [awk, "-v", f"want={address}", cloudinit.MAC_AWK, str(tmp_path / "private-networks")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == mac


def test_k3s_waits_for_the_private_address_on_every_start() -> None:
    drop_in = written(cfg(), 0, cloudinit.K3S_DROP_IN_PATH)["content"]
    assert drop_in.splitlines()[-2:] == [
        "[Service]",
        f"ExecStartPre={cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH}",
    ]


def test_k3s_download_and_install_retry_transient_failures_within_a_bound() -> None:
    script = written(cfg(), 0, cloudinit.INSTALL_SCRIPT_PATH)["content"]
    # curl: refused connections, DNS failures and 5xx (-f) are all retried, each try bounded.
    start = script.index("download() {")
    download = script[start : script.index("}\n", start)]
    for flag in ("-sfL", "--retry 5", "--retry-all-errors", "--connect-timeout 10", "--max-time"):
        assert flag in download
    assert f"\nattempts={cloudinit.INSTALL_ATTEMPTS}\n" in script
    assert "for ((attempt = 1; attempt <= attempts; attempt++)); do" in script
    assert 'if fetch && INSTALL_K3S_VERSION="$version"' in script
    assert 'log "FAILED: k3s ${version} not installed after ${attempts} attempts' in script


def test_the_address_script_exits_at_once_when_the_address_is_up(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    fake = tmp_path / "bin"
    fake.mkdir()
    # `ip -4 -o addr show` as on a Hetzner server whose private NIC came up in time.
    (fake / "ip").write_text(
        "#!/bin/sh\necho '3: enp7s0    inet 10.0.1.2/32 brd 10.0.1.2 scope global enp7s0'\n"
    )
    (fake / "ip").chmod(0o755)
    script = tmp_path / "address.sh"
    script.write_text(written(cfg(), 0, cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH)["content"])
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = subprocess.run(
        [bash, str(script)], capture_output=True, text=True, env=env, check=False, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_boot_scripts_pass_shellcheck(tmp_path: Path) -> None:
    c = cfg("secondary")
    for path in (cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH, cloudinit.INSTALL_SCRIPT_PATH):
        assert_shellcheck_clean(written(c, 1, path)["content"], tmp_path / Path(path).name)


def test_a_joining_server_waits_bounded_for_the_server_it_joins() -> None:
    c = cfg("secondary")
    first = written(c, 0, cloudinit.INSTALL_SCRIPT_PATH)["content"]
    assert "\njoin=''\n" in first, "cp-1 starts the cluster and waits for nobody"
    for node in (1, 2):
        k3s = yaml.safe_load(written(c, node, cloudinit.K3S_CONFIG_PATH)["content"])
        script = written(c, node, cloudinit.INSTALL_SCRIPT_PATH)["content"]
        # The same URL k3s joins through, waited for before the install attempts are spent.
        assert f"\njoin={k3s['server']}\n" in script
        assert f"\njoin_wait={cloudinit.JOIN_WAIT_SECONDS}\n" in script
        assert 'curl -ksf --connect-timeout 5 --max-time 10 -o /dev/null "$join/cacerts"' in script
        assert script.index('"$join/cacerts"') < script.index("for ((attempt = 1;")
        assert "did not answer for ${join_wait}s: the server this one joins" in script


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_worst_case_ca_files_are_at_least_as_large_as_real_ones(tmp_path: Path) -> None:
    # The shapes components/pki.py mints: ECDSA P-256 CAs with the region prefix in the subject
    # (at most 63 characters, Hetzner's name limit), a 10-year validity, CA key usages; an RSA
    # 2048 service-account key. openssl writes each in both PEM encodings the tls provider may.
    subject = f"/O={'o' * 63}/CN=k3s-request-header-ca"
    key, sec1, cert = tmp_path / "k", tmp_path / "sec1", tmp_path / "c"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    _openssl("ec", "-in", str(key), "-out", str(sec1))
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "3650",
        "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature,keyEncipherment",
    )  # fmt: skip
    rsa, rsa1 = tmp_path / "rsa", tmp_path / "rsa1"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(rsa))
    _openssl("rsa", "-in", str(rsa), "-traditional", "-out", str(rsa1))
    for real in (key, sec1):
        assert len(real.read_bytes()) <= len(cloudinit.worst_case_pem("client-ca.key"))
    assert len(cert.read_bytes()) <= len(cloudinit.worst_case_pem("etcd/peer-ca.crt"))
    for real in (rsa, rsa1):
        assert len(real.read_bytes()) <= len(cloudinit.worst_case_pem("service.key"))


# Workers: the same boot renderer with the role as its parameter.


def agent_files(c: StackConfig, pool: str = "general") -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(cloudinit.render_agent_user_data(c, pool, TOKEN))
    return {f["path"]: f for f in doc["write_files"]}


def test_an_agent_boots_the_server_boot_with_its_role_as_the_only_difference() -> None:
    c = cfg("secondary")
    server = {
        f["path"]: f
        for f in yaml.safe_load(cloudinit.render_user_data(c, 1, PUBLIC_IP, TOKEN))["write_files"]
    }
    agent = agent_files(c)
    # The same hardening, keys and bounded install; only the k3s mode and unit name differ.
    for path in (cloudinit.SSHD_DROP_IN_PATH, "/root/.ssh/authorized_keys"):
        assert agent[path] == server[path]
    install = agent[cloudinit.INSTALL_SCRIPT_PATH]["content"]
    assert install == server[cloudinit.INSTALL_SCRIPT_PATH]["content"].replace(
        "INSTALL_K3S_EXEC=server", "INSTALL_K3S_EXEC=agent"
    )
    assert cloudinit.K3S_AGENT_DROP_IN_PATH in agent
    assert cloudinit.K3S_DROP_IN_PATH not in agent
    k3s_agent = yaml.safe_load(agent[cloudinit.K3S_CONFIG_PATH]["content"])
    # Agents join the stable endpoint (the API LB's private address on HA), as cp-2/cp-3 do.
    assert k3s_agent["server"] == "https://10.0.1.253:6443" == cloudinit.join_url(c)
    assert "cluster-init" not in k3s_agent
    assert "tls-san" not in k3s_agent
    assert "catalyst.openova.io/role=worker" in k3s_agent["node-label"]
    assert "openova.io/pool=general" in k3s_agent["node-label"]
    assert "openova.io/region=omantel-hel1-2" in k3s_agent["node-label"]
    assert "workload=general" in k3s_agent["node-label"]
    single = cfg("primary", workers={"edge": {"serverType": "cpx22"}})
    single_agent = yaml.safe_load(agent_files(single, "edge")[cloudinit.K3S_CONFIG_PATH]["content"])
    assert single_agent["server"] == "https://10.0.1.2:6443"


def test_an_agent_reads_its_address_once_bounded_and_hands_it_to_k3s() -> None:
    script = agent_files(cfg("secondary"))[cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH]["content"]
    assert "\naddress=''\n" in script
    assert f'if [[ -z "$address" && -s {cloudinit.ADDRESS_RECORD_PATH} ]]; then' in script
    assert f"printf 'node-ip: %s\\n' \"$address\" >{cloudinit.NODE_IP_CONFIG_PATH}" in script
    loops = [line.strip() for line in script.splitlines() if line.strip().startswith("while")]
    assert len(loops) == 4
    assert all(line == "while ((SECONDS < deadline)); do" for line in loops)
    assert "lists no \\\nprivate network: the server is not attached" in script
    # A server's address is pinned: its script never reads one from the metadata service.
    server = written(cfg("secondary"), 1, cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH)["content"]
    assert cloudinit.ADDRESS_RECORD_PATH not in server


def test_agent_taints_are_k3s_node_taints() -> None:
    c = cfg(
        "secondary",
        workers={
            "general": {
                "serverType": "cpx32",
                "taints": [
                    {"key": "dedicated", "value": "dmz", "effect": "NoSchedule"},
                    {"key": "gpu", "effect": "NoExecute"},
                ],
            }
        },
        # Some pod must tolerate each taint (checks/workers.py).
        vclusters={
            "dmz": {"tolerations": [{"key": "dedicated", "value": "dmz"}]},
            "rtz": {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        },
    )
    k3s_agent = yaml.safe_load(agent_files(c)[cloudinit.K3S_CONFIG_PATH]["content"])
    assert k3s_agent["node-taint"] == ["dedicated=dmz:NoSchedule", "gpu:NoExecute"]


def test_agent_user_data_passes_cloud_inits_schema_and_shellcheck(tmp_path: Path) -> None:
    c = cfg("secondary", registryMirror={"enabled": True})
    user_data = cloudinit.render_agent_user_data(c, "general", TOKEN)
    assert_cloud_init_schema(user_data, tmp_path / "agent.yaml")
    files = agent_files(c)
    for name in (cloudinit.PRIVATE_ADDRESS_SCRIPT_PATH, cloudinit.INSTALL_SCRIPT_PATH):
        assert_shellcheck_clean(files[name]["content"], tmp_path / Path(name).name)


def test_an_agent_boots_behind_the_same_metadata_fence_as_a_server() -> None:
    from render.metadata_fence import FENCE_RULES_PATH, FENCE_UNIT, FENCE_UNIT_PATH

    doc = yaml.safe_load(cloudinit.render_agent_user_data(cfg("secondary"), "general", TOKEN))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert FENCE_RULES_PATH in files
    # The agent's unit is k3s-agent.service: the fence must hold it back too.
    assert "RequiredBy=k3s.service k3s-agent.service" in files[FENCE_UNIT_PATH]
    assert doc["packages"] == ["nftables"]
    assert doc["runcmd"][1] == ["systemctl", "enable", "--now", FENCE_UNIT]
    assert doc["runcmd"][-1] == [cloudinit.INSTALL_SCRIPT_PATH]


def test_an_arm64_pool_downloads_the_arm64_k3s_binary() -> None:
    c = cfg("primary", workers={"arm": {"serverType": "cax21"}})
    agent = agent_files(c, "arm")[cloudinit.INSTALL_SCRIPT_PATH]["content"]
    server = written(c, 0, cloudinit.INSTALL_SCRIPT_PATH)["content"]
    _, arm = cloudinit.k3s_downloads(c, "cax21")
    _, x86 = cloudinit.k3s_downloads(c)
    assert arm.url != x86.url
    assert f"binary_url={arm.url}" in agent
    assert f"binary_url={x86.url}" in server
