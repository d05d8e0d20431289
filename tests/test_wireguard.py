"""Issue 16 §6: Cilium's WireGuard port is open only to the other regions' server addresses."""

from __future__ import annotations

from typing import Any

import pytest

from checks.fleet import outputs_of, summary_of
from checks.preflight import parse as parse_config
from components.network import WIREGUARD_UDP_PORT, WORLD, firewall_rules, wireguard_peers
from config.errors import SovereignConfigError
from tools.mockrun import Run, evaluate, stack_config

FIREWALL = "hcloud:index/firewall:Firewall"


def outputs(stack: str, addresses: list[str]) -> dict[str, Any]:
    cfg = parse_config(stack_config(stack), stack)
    return {**outputs_of(summary_of(cfg, stack)), "controlPlanePublicIps": addresses}


def wireguard_sources(run: Run) -> list[str] | None:
    assert run.error is None, run.error
    rules = run.one(FIREWALL).inputs["rules"]
    found = [r for r in rules if r["protocol"] == "udp" and r.get("port") == WIREGUARD_UDP_PORT]
    assert len(found) <= 1
    return found[0]["sourceIps"] if found else None


def test_a_secondary_admits_only_its_primarys_servers() -> None:
    run = evaluate("secondary", references={"primary": outputs("primary", ["198.51.100.9"])})
    assert wireguard_sources(run) == ["198.51.100.9/32"]


def test_the_primary_admits_the_secondaries_it_lists() -> None:
    addresses = ["198.51.100.21", "198.51.100.22", "198.51.100.23"]
    run = evaluate(
        "primary",
        {"fleet": {"wireguardPeers": ["secondary"]}},
        references={"secondary": outputs("secondary", addresses)},
    )
    assert wireguard_sources(run) == [f"{a}/32" for a in addresses]


def test_without_peers_the_port_stays_closed_never_world_open() -> None:
    # The primary before any secondary is up; a peer that exported no addresses yet.
    assert wireguard_sources(evaluate("primary")) is None
    run = evaluate("secondary", references={"primary": outputs("primary", [])})
    assert wireguard_sources(run) is None
    cfg = parse_config(stack_config("secondary"), "secondary")
    for sources in ([], ["198.51.100.9/32"]):
        for rule in firewall_rules(cfg, sources):
            if rule.get("port") == WIREGUARD_UDP_PORT:
                assert not set(rule["source_ips"]) & set(WORLD)


def test_peers_are_the_primary_for_a_secondary_plus_the_listed_stacks() -> None:
    secondary = parse_config(
        {**stack_config("secondary"), "fleet": {"wireguardPeers": ["primary", "third"]}},
        "secondary",
    )
    assert wireguard_peers(secondary) == ["primary", "third"]
    assert wireguard_peers(parse_config(stack_config("primary"), "primary")) == []


def test_a_peer_that_is_not_a_stack_name_is_refused() -> None:
    with pytest.raises(SovereignConfigError) as err:
        parse_config(
            {**stack_config("primary"), "fleet": {"wireguardPeers": ["no spaces here"]}},
            "primary",
        )
    assert "sovereign:fleet.wireguardPeers" in str(err.value)
    assert "'no spaces here'" in str(err.value)
