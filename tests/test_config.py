"""Bad input: one error listing every invalid key by path, before any resource is declared."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from checks.preflight import label_problems
from checks.preflight import parse as parse_config
from components.network import firewall_rules
from config.errors import SovereignConfigError
from config.models import NETWORK_ZONES, Location
from render.cloudinit import cluster_dns
from render.naming import hetzner_labels
from tools.mockrun import DELETE, Run, evaluate, stack_config


def refused(overrides: dict[str, object], stack: str = "primary") -> tuple[str, Run]:
    run = evaluate(stack, overrides)
    assert isinstance(run.error, SovereignConfigError), run.error
    assert run.registrations == [], "a refused config must declare no resource"
    return str(run.error), run


def test_committed_stacks_parse() -> None:
    for stack in ("primary", "secondary"):
        cfg = parse_config(stack_config(stack), stack)
        assert cfg.region.role == stack


def test_every_invalid_key_is_listed_at_once_by_path() -> None:
    message, _ = refused(
        {
            "controlPlane": {"count": 2, "serverType": "m5.large"},
            "region": {"location": "us-east-1"},
            "access": {"sshAllowedCidrs": ["0.0.0.0/0"]},
        }
    )
    assert "(4 problem(s))" in message
    assert (
        "sovereign:controlPlane.count = 2: 1 (single server) or 3 (HA with embedded etcd); 2 servers have no etcd quorum"
        in message
    )
    assert (
        "sovereign:controlPlane.serverType = 'm5.large': not a Hetzner server type on sale"
        in message
    )
    assert (
        "sovereign:region.location = 'us-east-1': one of 'fsn1', 'nbg1', 'hel1', 'ash', 'hil' or 'sin'"
        in message
    )
    assert (
        "sovereign:access.sshAllowedCidrs[0] = '0.0.0.0/0': SSH open to the whole internet is refused"
        in message
    )


def test_unknown_keys_are_errors_so_typos_surface() -> None:
    message, _ = refused({"controlPlane": {"serverTyp": "cpx31"}, "vclusterz": {}})
    assert (
        "sovereign:controlPlane.serverTyp = (value not shown): unknown key: did you mean "
        "serverType? "
        "Otherwise remove it" in message
    )
    assert (
        "sovereign:vclusterz = (value not shown): unknown key: did you mean vclusters? "
        "Otherwise remove it" in message
    )


def test_missing_objects_are_named() -> None:
    message, _ = refused({"region": DELETE, "access": DELETE})
    assert "sovereign:region = (not set): required" in message
    assert "sovereign:access = (not set): required" in message


def test_wrong_types_are_reported_with_their_value() -> None:
    message, _ = refused({"region": {"index": "first"}, "controlPlane": {"protect": "maybe"}})
    assert "sovereign:region.index = 'first': a whole number without quotes" in message
    assert "sovereign:controlPlane.protect = 'maybe': true or false, without quotes" in message


def test_ssh_sources_left_out_are_refused_like_an_empty_list() -> None:
    raw = stack_config("primary")
    raw["access"] = {k: v for k, v in raw["access"].items() if k != "sshAllowedCidrs"}
    with pytest.raises(SovereignConfigError) as err:
        parse_config(raw, "primary")
    assert "sovereign:access.sshAllowedCidrs = (not set): empty, but operators reach" in str(
        err.value
    )


def test_ssh_closed_is_refused_because_operators_and_the_default_api_sources_need_it() -> None:
    message, _ = refused({"access": {"sshAllowedCidrs": []}})
    assert (
        "sovereign:access.sshAllowedCidrs = []: empty, but operators reach the servers over SSH only "
        "from these sources, and the Kubernetes API that `pulumi up` deploys through defaults to them"
        in message
    )


def test_ipv6_world_is_refused_for_ssh_too() -> None:
    message, _ = refused({"access": {"sshAllowedCidrs": ["203.0.113.10/32", "::/0"]}})
    assert "sovereign:access.sshAllowedCidrs[1] = '::/0'" in message


def test_private_key_pasted_as_public_key_is_refused_and_never_echoed() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----"
    message, _ = refused({"access": {"sshPublicKeys": [key]}})
    assert "sovereign:access.sshPublicKeys[0] = [redacted]: this is a private key" in message
    assert "c2VjcmV0" not in message


def test_public_key_shapes() -> None:
    message, _ = refused({"access": {"sshPublicKeys": ["ssh-dss AAAAB3Nza"]}})
    assert (
        "sovereign:access.sshPublicKeys[0] = 'ssh-dss AAAAB3Nza': an OpenSSH public key" in message
    )


@pytest.mark.parametrize(
    ("region", "fragment"),
    [
        ({"role": "primary", "index": 1}, "region.index = 1: the primary region has index 0"),
        ({"role": "secondary", "index": 0}, "index 0 is the primary's"),
        ({"key": "nbg1"}, "region.key = 'nbg1': must start with its location 'fsn1'"),
        ({"key": "Fsn1"}, "a location (fsn1, nbg1, hel1, ash, hil, sin) with an optional ordinal"),
        ({"key": "fsn"}, "a location (fsn1, nbg1, hel1, ash, hil, sin) with an optional ordinal"),
        ({"fqdn": "localhost"}, "a lower-case DNS name with at least two labels"),
        ({"index": 54}, "region.index = 54: a number at most 53"),
    ],
)
def test_region_consistency(region: dict[str, object], fragment: str) -> None:
    message, _ = refused({"region": region})
    assert "sovereign:region" in message
    assert fragment in message


def test_k3s_version_must_be_an_exact_release() -> None:
    message, _ = refused({"controlPlane": {"k3sVersion": "stable"}})
    assert (
        "sovereign:controlPlane.k3sVersion = 'stable': an exact k3s release, e.g. v1.35.6+k3s1"
        in message
    )


def test_overlapping_cidrs_are_refused() -> None:
    message, _ = refused({"network": {"podCidr": "10.0.0.0/8"}})
    assert (
        "sovereign:network.cidr = '10.0.0.0/16': must not overlap sovereign:network.podCidr 10.0.0.0/8"
        in message
    )


def test_control_plane_ips_must_fit_the_subnet() -> None:
    message, _ = refused(
        {"network": {"firstControlPlaneIp": "10.0.1.254"}, "controlPlane": {"count": 3}}
    )
    assert (
        "sovereign:network.firstControlPlaneIp = '10.0.1.254': control-plane address 10.0.1.255"
        in message
    )


def test_subnet_outside_network_is_refused() -> None:
    message, _ = refused({"network": {"subnetCidr": "10.1.1.0/24"}})
    assert (
        "sovereign:network.subnetCidr = '10.1.1.0/24': a subnet inside sovereign:network.cidr 10.0.0.0/16"
        in message
    )


def test_load_balancer_ip_must_be_free_in_the_subnet() -> None:
    message, _ = refused({"loadBalancer": {"enabled": True, "privateIp": "10.0.1.2"}})
    assert (
        "sovereign:loadBalancer.privateIp = '10.0.1.2': a free host address of 10.0.1.0/24"
        in message
    )


def test_empty_image_tag_fails_fast() -> None:
    message, _ = refused({"vclusters": {"dmz": {"image": {"tag": ""}}}})
    assert "sovereign:vclusters.dmz.image.tag = '': pinned image required" in message


def test_secret_config_values_are_never_echoed() -> None:
    with pytest.raises(SovereignConfigError) as err:
        parse_config(
            {**stack_config("primary"), "apiToken": "s3cr3t-value"},
            "primary",
            secret_keys=frozenset({"apiToken"}),
        )
    assert "sovereign:apiToken = [redacted]: unknown key" in str(err.value)
    assert "s3cr3t-value" not in str(err.value)


def test_config_error_is_a_clean_pulumi_run_error() -> None:
    import pulumi

    _, run = refused({"controlPlane": {"count": 2}})
    # RunError makes the CLI print the message alone, without a Python traceback.
    assert isinstance(run.error, pulumi.RunError)


def test_documented_configuration_table_matches_the_models() -> None:
    from pathlib import Path

    from tools.config_reference import BEGIN, END, table

    readme = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    documented = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert documented == table(), (
        "docs/configuration.md drifted: paste `./sovereign config-reference` into it"
    )


# --- every value checked for what its consumer accepts (issue 8 §6) -----------------------------


@pytest.mark.parametrize("location", get_args(Location))
@pytest.mark.parametrize("ordinal", ["", "-2"])
def test_every_offered_location_can_be_a_region_key(location: str, ordinal: str) -> None:
    raw = {**stack_config("primary")}
    raw["region"] = {**raw["region"], "key": location + ordinal, "location": location}
    # ccx23 is sold in every location (config/data/hetzner_server_types.yaml); cpx32 is not.
    raw["controlPlane"] = {**raw["controlPlane"], "serverType": "ccx23"}
    cfg = parse_config(raw, "primary")
    assert cfg.region.key == location + ordinal
    assert cfg.network_zone == NETWORK_ZONES[location]
    assert hetzner_labels(cfg)["openova.io/region"] == f"omantel-{location}{ordinal}"


REFUSALS: list[tuple[dict[str, Any], str]] = [
    # Addresses in the Hetzner network: RFC 1918 IPv4 (and never past the end of IPv4).
    (
        {"network": {"firstControlPlaneIp": "255.255.255.254"}},
        "sovereign:network.firstControlPlaneIp = '255.255.255.254': a private address inside one "
        "of 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (Hetzner networks take RFC 1918 only)",
    ),
    (
        {"api": {"privateIp": "10.0.1"}},
        "sovereign:api.privateIp = '10.0.1': an IPv4 address, e.g. 10.0.1.2",
    ),
    (
        {"loadBalancer": {"privateIp": "fd00::1"}},
        "sovereign:loadBalancer.privateIp = 'fd00::1': an IPv4 address, e.g. 10.0.1.2",
    ),
    # Hetzner networks: RFC 1918 IPv4, /24 or larger; subnets /30 or larger.
    (
        {"network": {"cidr": "2001:db8::/32"}},
        "sovereign:network.cidr = '2001:db8::/32': an IPv4 range: Hetzner networks take RFC 1918",
    ),
    (
        {"network": {"cidr": "8.8.0.0/16"}},
        "sovereign:network.cidr = '8.8.0.0/16': a private range inside one of 10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16",
    ),
    (
        {"network": {"cidr": "100.64.0.0/16", "subnetCidr": "100.64.1.0/24"}},
        "sovereign:network.cidr = '100.64.0.0/16': a private range inside one of 10.0.0.0/8",
    ),
    (
        {"network": {"cidr": "10.0.1.0/25"}},
        "sovereign:network.cidr = '10.0.1.0/25': a /24 or larger: Hetzner's minimum network size",
    ),
    (
        {"network": {"subnetCidr": "10.0.1.0/31"}},
        "sovereign:network.subnetCidr = '10.0.1.0/31': a /30 or larger: Hetzner's minimum subnet",
    ),
    (
        {"network": {"cidr": "10.0.0.1/16"}},
        "sovereign:network.cidr = '10.0.0.1/16': a CIDR with no host bits set",
    ),
    (
        {"network": {"cidr": "10.0.0.0/33"}},
        "sovereign:network.cidr = '10.0.0.0/33': the prefix length is out of range: an IPv4 range takes /0 to /32",
    ),
    # k3s single-stack IPv4 ranges and their sizes.
    (
        {"network": {"podCidr": "fd00:42::/56"}},
        "sovereign:network.podCidr = 'fd00:42::/56': an IPv4 range: k3s runs single-stack",
    ),
    (
        {"network": {"serviceCidr": "fd00:96::/112"}},
        "sovereign:network.serviceCidr = 'fd00:96::/112': an IPv4 range: k3s runs single-stack",
    ),
    (
        {"network": {"podCidr": "8.8.0.0/16"}},
        "sovereign:network.podCidr = '8.8.0.0/16': a private range inside one of 10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10",
    ),
    (
        {"network": {"podCidr": "10.42.0.0/25"}},
        "sovereign:network.podCidr = '10.42.0.0/25': a /24 or larger: every node takes a /24",
    ),
    (
        {"network": {"serviceCidr": "10.96.0.0/11"}},
        "sovereign:network.serviceCidr = '10.96.0.0/11': a /12 or smaller: kube-apiserver refuses "
        "a service range with more than 20 host bits",
    ),
    (
        {"network": {"serviceCidr": "10.96.0.0/29"}},
        "sovereign:network.serviceCidr = '10.96.0.0/29': a /28 or larger: k3s puts cluster DNS on "
        "the range's 10th address",
    ),
    (
        {"network": {"podCidr": "10.42.0.0/23"}, "controlPlane": {"count": 3}},
        "sovereign:network.podCidr = '10.42.0.0/23': room for 3 nodes of a /24 each "
        "(kube-controller-manager --node-cidr-mask-size); this range holds 2",
    ),
    # SSH open to the world, however it is split.
    (
        {"access": {"sshAllowedCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}},
        'sovereign:access.sshAllowedCidrs = ["0.0.0.0/1", "128.0.0.0/1"]: together these ranges '
        "cover 0.0.0.0/0, the whole internet. SSH open to the whole internet is refused",
    ),
    (
        {"access": {"sshAllowedCidrs": ["203.0.113.10/32", "::/1", "8000::/1"]}},
        "together these ranges cover ::/0, the whole internet",
    ),
    (
        {"access": {"apiAllowedCidrs": []}},
        "sovereign:access.apiAllowedCidrs = []: at least 1 item(s)",
    ),
    # Names that become label values and Hetzner names.
    (
        {"name": "omantel-"},
        "sovereign:name = 'omantel-': 2-20 lower-case letters, digits or '-', starting with a "
        "letter and ending with a letter or digit",
    ),
    # Registries: a host name with an optional port, never a URL.
    (
        {"registryMirror": {"host": "https://harbor.example.com"}},
        "sovereign:registryMirror.host = 'https://harbor.example.com': a registry host name with "
        "an optional port, without scheme or path",
    ),
    (
        {"registryMirror": {"host": "harbor_example.com"}},
        "sovereign:registryMirror.host = 'harbor_example.com': a registry host name with an "
        "optional port: DNS labels",
    ),
    (
        {"registryMirror": {"host": "harbor.example.com:99999"}},
        "sovereign:registryMirror.host = 'harbor.example.com:99999': a port between 1 and 65535",
    ),
    (
        {"vclusters": {"dmz": {"image": {"registry": "ghcr.io/loft-sh"}}}},
        "sovereign:vclusters.dmz.image.registry = 'ghcr.io/loft-sh': a registry host name",
    ),
    # Chart versions are exact pins; CRD bundles come by release tag.
    (
        {"cilium": {"version": "1.18"}},
        "sovereign:cilium.version = '1.18': one exact chart version, MAJOR.MINOR.PATCH",
    ),
    (
        {"cilium": {"version": "^1.18"}},
        "sovereign:cilium.version = '^1.18': one exact chart version",
    ),
    (
        {"cilium": {"version": ""}},
        "sovereign:cilium.version = '': one exact chart version",
    ),
    (
        {"certManager": {"version": "~1.21.0"}},
        "sovereign:certManager.version = '~1.21.0': one exact chart version",
    ),
    (
        {"cilium": {"gatewayApi": {"crdsVersion": "1.3.0"}}},
        "sovereign:cilium.gatewayApi.crdsVersion = '1.3.0': a Gateway API release tag "
        "vMAJOR.MINOR.PATCH",
    ),
    (
        {"cilium": {"gatewayApi": {"crdsVersion": "v1.3"}}},
        "sovereign:cilium.gatewayApi.crdsVersion = 'v1.3': a Gateway API release tag",
    ),
    # Image tags, digests and repositories in the OCI grammar.
    (
        {"vclusters": {"dmz": {"image": {"tag": "-rc1"}}}},
        "sovereign:vclusters.dmz.image.tag = '-rc1': an OCI image tag",
    ),
    (
        {"vclusters": {"dmz": {"image": {"tag": "x" * 129}}}},
        "sovereign:vclusters.dmz.image.tag = 'xxxx",
    ),
    (
        {"vclusters": {"dmz": {"image": {"tag": "0.20.0 "}}}},
        "sovereign:vclusters.dmz.image.tag = '0.20.0 ': an OCI image tag",
    ),
    (
        {"vclusters": {"dmz": {"image": {"digest": "sha256:" + "A" * 64}}}},
        "sovereign:vclusters.dmz.image.digest = 'sha256:AAAA",
    ),
    (
        {"vclusters": {"dmz": {"image": {"repository": "Loft-sh/vcluster"}}}},
        "sovereign:vclusters.dmz.image.repository = 'Loft-sh/vcluster': an OCI repository path",
    ),
]


@pytest.mark.parametrize(("overrides", "line"), REFUSALS, ids=lambda v: str(v)[:60])
def test_each_value_is_refused_by_key_path_and_value(overrides: dict[str, Any], line: str) -> None:
    stack = "primary"
    message, _ = refused(overrides, stack)
    assert line in message


def test_oversized_tag_and_uppercase_digest_say_what_is_allowed() -> None:
    message, _ = refused(
        {"vclusters": {"dmz": {"image": {"tag": "x" * 129, "digest": "sha256:" + "A" * 64}}}}
    )
    assert "an OCI image tag: up to 128 letters" in message
    assert "an image digest: sha256: followed by 64 lower-case hex digits" in message


@pytest.mark.parametrize(
    "overrides",
    [
        {"registryMirror": {"host": "harbor.example.com:5000"}},
        {"registryMirror": {"host": "registry-1"}},
        # An exact pin whose package is vendored (a pre-release pin is an exact pin too, but
        # `up` installs only vendored packages: tests/test_versions.py).
        {"cilium": {"version": "1.19.6"}},
        {"certManager": {"version": "v1.21.1"}},
        {"vclusters": {"dmz": {"image": {"digest": "sha256:" + "a" * 64, "tag": "0.20.0_a.b-c"}}}},
        {"network": {"podCidr": "100.64.0.0/16", "serviceCidr": "172.16.0.0/28"}},
        {"network": {"podCidr": "10.42.0.0/22"}, "controlPlane": {"count": 3}},
        {"access": {"sshAllowedCidrs": ["0.0.0.0/2", "2001:db8::/32"]}},
        {"access": {"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]}, "api": {"public": True}},
    ],
    ids=str,
)
def test_values_every_consumer_takes_are_accepted(overrides: dict[str, Any]) -> None:
    cfg = parse_config(_merged("primary", overrides), "primary")
    assert cfg.name == "omantel"


def _merged(stack: str, overrides: dict[str, Any]) -> dict[str, Any]:
    raw = stack_config(stack)
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


def test_kubernetes_api_defaults_to_the_ssh_sources() -> None:
    cfg = parse_config(stack_config("primary"), "primary")
    rules = {rule["port"]: rule for rule in firewall_rules(cfg) if "port" in rule}
    assert rules["6443"]["source_ips"] == ["203.0.113.10/32"]
    assert rules["22"]["source_ips"] == ["203.0.113.10/32"]


def test_kubernetes_api_open_to_the_world_only_when_listed() -> None:
    world = {"access": {"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]}, "api": {"public": True}}
    cfg = parse_config(_merged("primary", world), "primary")
    rules = {rule["port"]: rule for rule in firewall_rules(cfg) if "port" in rule}
    assert rules["6443"]["source_ips"] == ["0.0.0.0/0", "::/0"]
    assert rules["22"]["source_ips"] == ["203.0.113.10/32"]


def test_the_deployed_firewall_opens_the_api_to_the_ssh_sources_by_default(primary: Run) -> None:
    firewall = primary.one("hcloud:index/firewall:Firewall")
    api = [rule for rule in firewall.inputs["rules"] if rule.get("port") == "6443"]
    assert [rule["sourceIps"] for rule in api] == [["203.0.113.10/32"]]


def test_label_values_are_checked_on_what_the_program_sends() -> None:
    cfg = parse_config(stack_config("primary"), "primary")
    assert label_problems(cfg) == []
    # Past the models (as a future name or key rule might let through): the label check holds.
    bad = cfg.model_copy(update={"name": "x" * 60 + "_"})
    problems = label_problems(bad)
    assert problems
    assert problems[0].path == "sovereign:name / sovereign:region.key"
    assert "a label value for Hetzner and Kubernetes: at most 63 characters" in problems[0].allowed


def test_cluster_dns_is_the_tenth_address_of_the_smallest_service_range() -> None:
    cfg = parse_config(_merged("primary", {"network": {"serviceCidr": "10.96.0.0/28"}}), "primary")
    assert cluster_dns(cfg) == "10.96.0.10"


def test_library_messages_never_carry_the_value() -> None:
    # ipaddress's own text would repeat the input ("'10.0.0.1/16' has host bits set").
    message, _ = refused({"network": {"cidr": "10.0.7.1/16"}})
    allowed = message.split("sovereign:network.cidr = '10.0.7.1/16': ", 1)[1]
    assert "10.0.7.1" not in allowed
    assert "has host bits set" not in message


def test_an_encrypted_value_is_named_as_such_not_as_missing_keys() -> None:
    raw = _merged("primary", {})
    raw["controlPlane"] = {"secure": "v1:c2VjcmV0Y2lwaGVydGV4dA=="}
    raw["access"] = {**raw["access"], "sshAllowedCidrs": [{"secure": "v1:AAAA"}]}
    with pytest.raises(SovereignConfigError) as err:
        parse_config(raw, "primary")
    message = str(err.value)
    # One problem per encrypted value, none about the keys the ciphertext hides.
    assert "(2 problem(s))" in message
    assert "required" not in message
    assert "unknown key" not in message
    for path in ("sovereign:controlPlane", "sovereign:access.sshAllowedCidrs[0]"):
        assert (
            f"  - {path} = (encrypted: a secure: value): an encrypted value; the offline plan "
            "reads no secrets (no passphrase, no state backend)" in message
        )
    assert "c2VjcmV0" not in message
    assert "v1:AAAA" not in message
