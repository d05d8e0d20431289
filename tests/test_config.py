"""Bad input: one error listing every invalid key by path, before any resource is declared."""

from __future__ import annotations

import pytest

from checks.preflight import parse as parse_config
from config.errors import SovereignConfigError
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
        "sovereign:region.location = 'us-east-1': Input should be 'fsn1', 'nbg1', 'hel1', 'ash', 'hil' or 'sin'"
        in message
    )
    assert (
        "sovereign:access.sshAllowedCidrs[0] = '0.0.0.0/0': SSH open to the whole internet is refused"
        in message
    )


def test_unknown_keys_are_errors_so_typos_surface() -> None:
    message, _ = refused({"controlPlane": {"serverTyp": "cpx31"}, "vclusterz": {}})
    assert "sovereign:controlPlane.serverTyp = 'cpx31': unknown key (a typo?); remove it" in message
    assert "sovereign:vclusterz = {}: unknown key (a typo?); remove it" in message


def test_missing_objects_are_named() -> None:
    message, _ = refused({"region": DELETE, "access": DELETE})
    assert "sovereign:region = (not set): required" in message
    assert "sovereign:access = (not set): required" in message


def test_wrong_types_are_reported_with_their_value() -> None:
    message, _ = refused({"region": {"index": "first"}, "controlPlane": {"protect": "maybe"}})
    assert "sovereign:region.index = 'first': Input should be a valid integer" in message
    assert "sovereign:controlPlane.protect = 'maybe': Input should be a valid boolean" in message


def test_ssh_closed_is_refused_because_the_kubeconfig_is_read_over_ssh() -> None:
    message, _ = refused({"access": {"sshAllowedCidrs": []}})
    assert (
        "sovereign:access.sshAllowedCidrs = []: empty, but `pulumi up` reads the kubeconfig over SSH"
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
        ({"role": "primary", "index": 1}, "index 1: the primary region has index 0"),
        ({"role": "secondary", "index": 0}, "index 0 is the primary's"),
        ({"key": "nbg1"}, "key 'nbg1' must start with its location 'fsn1'"),
        ({"key": "Fsn1"}, "a location code with an optional ordinal"),
        ({"fqdn": "localhost"}, "a lower-case DNS name with at least two labels"),
        ({"index": 54}, "Input should be less than or equal to 53"),
    ],
)
def test_region_consistency(region: dict[str, object], fragment: str) -> None:
    message, _ = refused({"region": region})
    assert "sovereign:region" in message
    assert fragment in message


def test_k3s_version_must_be_an_exact_release() -> None:
    message, _ = refused({"controlPlane": {"k3sVersion": "stable"}})
    assert (
        "sovereign:controlPlane.k3sVersion = 'stable': an exact k3s release, e.g. v1.33.13+k3s2"
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


def test_readme_configuration_table_matches_the_models() -> None:
    from pathlib import Path

    from tools.config_reference import BEGIN, END, table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    documented = readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)].strip()
    assert documented == table(), "README drifted: paste `./sovereign config-reference` into it"
