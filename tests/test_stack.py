"""The committed stacks under mocks: Hetzner resources, options, secrets and outputs."""

from __future__ import annotations

import zlib

import yaml

from tools.mockrun import FAKE_K3S_TOKEN, Registration, Run, evaluate

SERVER = "hcloud:index/server:Server"


def cp_servers(run: Run) -> list[Registration]:
    """The control-plane servers (worker pools have servers of their own)."""
    return [
        s
        for s in run.of_type(SERVER)
        if s.inputs["labels"].get("catalyst.openova.io/role") == "control-plane"
    ]


PRIMARY_IP = "hcloud:index/primaryIp:PrimaryIp"
COMMAND = "command:local:Command"
LB_TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
PROVIDER = "pulumi:providers:kubernetes"


def test_primary_has_one_server_and_secondary_three(primary: Run, secondary: Run) -> None:
    assert [s.inputs["name"] for s in cp_servers(primary)] == ["omantel-fsn1-cp-1"]
    assert sorted(s.inputs["name"] for s in cp_servers(secondary)) == [
        "omantel-hel1-2-cp-1",
        "omantel-hel1-2-cp-2",
        "omantel-hel1-2-cp-3",
    ]


def test_servers_sit_at_fixed_private_ips_in_the_region_network(secondary: Run) -> None:
    ips = sorted(s.inputs["networks"][0]["ip"] for s in cp_servers(secondary))
    assert ips == ["10.0.1.2", "10.0.1.3", "10.0.1.4"]
    network = secondary.one("hcloud:index/network:Network")
    subnet = secondary.one("hcloud:index/networkSubnet:NetworkSubnet", "omantel-hel1-2-subnet")
    assert network.inputs["ipRange"] == "10.0.0.0/16"
    assert subnet.inputs["ipRange"] == "10.0.1.0/24"
    assert subnet.inputs["networkZone"] == "eu-central"
    assert subnet.inputs["type"] == "cloud"
    for server in cp_servers(secondary):
        assert subnet.urn in server.dependencies, (
            "Hetzner attaches servers only to existing subnets"
        )
        assert server.inputs["location"] == "hel1"
        assert server.inputs["image"] == "ubuntu-24.04"
        assert server.inputs["serverType"] == "cpx32"


def test_server_uses_preallocated_primary_ip_and_spread_placement(primary: Run) -> None:
    server = primary.one(SERVER)
    ip = primary.one(PRIMARY_IP)
    assert ip.inputs["type"] == "ipv4"
    assert ip.inputs["autoDelete"] is False
    assert server.inputs["publicNets"][0]["ipv4Enabled"] is True
    assert ip.urn in server.dependencies
    group = primary.one("hcloud:index/placementGroup:PlacementGroup", "omantel-fsn1-spread")
    assert group.inputs["type"] == "spread"
    assert group.urn in server.dependencies


def test_firewall_opens_only_what_the_region_needs(primary: Run) -> None:
    rules = primary.one("hcloud:index/firewall:Firewall").inputs["rules"]
    by_port = {(r["protocol"], r.get("port")): r["sourceIps"] for r in rules}
    assert by_port[("tcp", "22")] == ["203.0.113.10/32"]
    assert by_port[("tcp", "6443")] == ["203.0.113.10/32"]  # the SSH sources by default
    assert ("tcp", "80") in by_port
    assert ("tcp", "443") in by_port
    assert ("icmp", None) in by_port
    # WireGuard only from other regions' servers: the primary lists none by default.
    assert ("udp", "51871") not in by_port
    assert len(rules) == 5
    assert all(r["direction"] == "in" for r in rules)


def test_names_and_labels_never_collide_between_regions(primary: Run, secondary: Run) -> None:
    def physical(run: Run) -> set[str]:
        return {
            r.inputs["name"]
            for r in run.registrations
            if r.type.startswith("hcloud:") and "name" in r.inputs
        }

    assert physical(primary).isdisjoint(physical(secondary))
    for reg in primary.registrations:
        if reg.type.startswith("hcloud:") and "labels" in reg.inputs:
            assert reg.inputs["labels"]["openova.io/sovereign"] == "omantel"
            assert reg.inputs["labels"]["openova.io/region"] == "omantel-fsn1"
            assert reg.inputs["labels"]["openova.io/region-role"] == "primary"


def test_control_plane_is_protected_and_never_silently_replaced(secondary: Run) -> None:
    for server in cp_servers(secondary):
        assert server.protect is True
        assert set(server.ignore_changes) == {"userData", "image", "sshKeys"}
        assert server.delete_before_replace is False
        assert server.inputs["deleteProtection"] is True
        assert server.inputs["rebuildProtection"] is True
        assert server.inputs["labels"]["catalyst.openova.io/role"] == "control-plane"
    assert all(ip.protect for ip in secondary.of_type(PRIMARY_IP))


def test_replacement_needs_an_explicit_opt_in_naming_one_server() -> None:
    run = evaluate(
        "secondary",
        {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-2"}},
    )
    assert run.error is None, run.error
    first, second, third = sorted(cp_servers(run), key=lambda s: s.name)
    assert second.ignore_changes == []
    # The fixed private IP must be free before the successor is created.
    assert second.delete_before_replace is True
    assert second.protect is False
    for other in (first, third):
        assert set(other.ignore_changes) == {"userData", "image", "sshKeys"}
        assert other.protect is True


def test_protection_can_be_switched_off_for_throwaway_regions() -> None:
    server = evaluate("primary", {"controlPlane": {"protect": False}}).one(SERVER)
    assert server.protect is False
    assert server.inputs["deleteProtection"] is False


def test_user_data_is_secret_and_carries_the_token(primary: Run) -> None:
    server = primary.one(SERVER)
    assert "userData" in server.secret_inputs
    assert server.inputs["userData"].startswith("#cloud-config\n")
    assert FAKE_K3S_TOKEN in server.inputs["userData"]


def test_user_data_tls_san_matches_the_kubeconfig_server(primary: Run) -> None:
    ip = primary.outputs["controlPlanePublicIps"][0]
    doc = yaml.safe_load(primary.one(SERVER).inputs["userData"])
    k3s = yaml.safe_load(
        next(f for f in doc["write_files"] if f["path"] == "/etc/rancher/k3s/config.yaml")[
            "content"
        ]
    )
    kubeconfig = yaml.safe_load(primary.outputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{ip}:6443"
    assert ip in k3s["tls-san"]
    assert "omantel.openova.io" in k3s["tls-san"]


def test_deployer_ssh_key_is_generated_per_region(primary: Run) -> None:
    key = primary.one("tls:index/privateKey:PrivateKey", "omantel-fsn1-deployer-key")
    assert key.inputs["algorithm"] == "ED25519"
    ssh_key = primary.one("hcloud:index/sshKey:SshKey")
    assert ssh_key.inputs["name"] == "omantel-fsn1-deployer"
    assert ssh_key.urn in primary.one(SERVER).dependencies


def test_the_wait_runs_on_the_deployer_after_every_server_without_ssh(secondary: Run) -> None:
    wait = secondary.one(COMMAND, "omantel-hel1-2-wait")
    assert not secondary.of_type("command:remote:Command"), "no SSH in the deploy path"
    assert wait.inputs["interpreter"] == ["python3", "-c"]
    assert "environment" in wait.secret_inputs, "it carries the client key"
    env = wait.inputs["environment"]
    assert env["SOVEREIGN_NODES"] == ",".join(f"omantel-hel1-2-cp-{n}" for n in (1, 2, 3))
    assert int(env["SOVEREIGN_TIMEOUT"]) <= 900
    servers = {s.urn for s in cp_servers(secondary)}
    targets = {t.urn for t in secondary.of_type(LB_TARGET) if "api-lb" in t.name}
    assert servers | targets <= set(wait.dependencies)


def test_kubeconfig_output_is_secret_and_points_at_the_region(primary: Run) -> None:
    assert "kubeconfig" in primary.secret_outputs
    doc = yaml.safe_load(primary.outputs["kubeconfig"])
    assert doc["current-context"] == "omantel-fsn1"
    assert doc["clusters"][0]["cluster"]["server"] != "https://127.0.0.1:6443"


def test_kubernetes_provider_identity_and_secret_kubeconfig(primary: Run) -> None:
    provider = primary.one(PROVIDER)
    identity = primary.one("random:index/randomId:RandomId", "omantel-fsn1-cluster-id")
    # The mock's RandomId hex is the crc32 of its name.
    hex_id = f"{zlib.crc32(identity.name.encode()):08x}"
    assert provider.inputs["clusterIdentifier"] == f"omantel-fsn1-{hex_id}"
    assert identity.urn in provider.dependencies
    assert provider.inputs["deleteUnreachable"] == "false"
    assert "kubeconfig" in provider.secret_inputs


def test_every_kubernetes_resource_uses_the_region_provider(primary: Run) -> None:
    provider = primary.one(PROVIDER)
    k8s = [r for r in primary.registrations if r.type.startswith("kubernetes:") and r.custom]
    assert k8s
    for reg in k8s:
        assert reg.provider.startswith(provider.urn + "::"), reg.name


def test_outputs(primary: Run, secondary: Run) -> None:
    assert primary.outputs["regionKey"] == "fsn1"
    assert primary.outputs["role"] == "primary"
    assert primary.outputs["controlPlanePrivateIps"] == ["10.0.1.2"]
    assert len(secondary.outputs["controlPlanePublicIps"]) == 3
    assert secondary.outputs["role"] == "secondary"
    assert primary.outputs["vclusters"] == ["dmz", "mgmt"]
    assert secondary.outputs["vclusters"] == ["dmz", "rtz"]
    assert primary.outputs["vclusterCount"] == 2
    # What `plan --all --live` needs to check a deployed fleet's indexes and CIDRs.
    assert (primary.outputs["regionIndex"], secondary.outputs["regionIndex"]) == (0, 1)
    assert primary.outputs["podCidr"] == "10.42.0.0/16"
    assert secondary.outputs["serviceCidr"] == "10.97.0.0/16"
    assert primary.secret_outputs == {"kubeconfig"}
    assert primary.outputs["k3sVersion"] == "v1.35.6+k3s1"


def test_load_balancer_is_optional_with_pinned_private_ip() -> None:
    run = evaluate(
        "secondary",
        {"loadBalancer": {"enabled": True}, "cilium": {"gatewayApi": {"enabled": True}}},
    )
    lb = run.one("hcloud:index/loadBalancer:LoadBalancer", "omantel-hel1-2-lb")
    assert lb.inputs["loadBalancerType"] == "lb11"
    attachment = run.one(
        "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork", "omantel-hel1-2-lb-net"
    )
    assert attachment.inputs["ip"] == "10.0.1.254"
    targets = [t for t in run.of_type(LB_TARGET) if "api-lb" not in t.name]
    assert len(targets) == 3
    assert all(t.inputs["usePrivateIp"] is True for t in targets)
    assert all(attachment.urn in t.dependencies for t in targets)
    services = {
        s.inputs["listenPort"]: s.inputs["destinationPort"]
        for s in run.of_type("hcloud:index/loadBalancerService:LoadBalancerService")
        if "api-lb" not in s.name
    }
    assert services == {80: 18080, 443: 18443}
    assert run.outputs["loadBalancerIp"].startswith("203.0.113.")
    lbs = evaluate("secondary").of_type("hcloud:index/loadBalancer:LoadBalancer")
    assert [lb.name for lb in lbs] == ["omantel-hel1-2-api-lb"], "only the API endpoint"


def test_firewall_applies_by_label_and_no_input_drifts_after_a_refresh(secondary: Run) -> None:
    # issue 18 §7: nothing the provider reads back differently from what the program sends.
    firewall = secondary.one("hcloud:index/firewall:Firewall")
    attachment = secondary.one("hcloud:index/firewallAttachment:FirewallAttachment")
    # The region's servers, and the servers cluster-autoscaler creates for the autoscaled pool.
    assert attachment.inputs["labelSelectors"] == [
        "openova.io/region=omantel-hel1-2",
        "hcloud/node-group=omantel-hel1-2-burst",
    ]
    assert firewall.urn in attachment.dependencies
    assert "serverIds" not in attachment.inputs
    assert "applyTos" not in firewall.inputs
    servers = secondary.of_type("hcloud:index/server:Server")
    assert len(servers) == 5  # three control-plane servers and the worker pool's two
    for server in servers:
        assert "firewallIds" not in server.inputs
        # Selected by the attachment, which exists before the server boots.
        assert server.inputs["labels"]["openova.io/region"] == "omantel-hel1-2"
        assert attachment.urn in server.dependencies
    for ip in secondary.of_type("hcloud:index/primaryIp:PrimaryIp"):
        assert "assigneeType" not in ip.inputs
        assert "assigneeId" not in ip.inputs
