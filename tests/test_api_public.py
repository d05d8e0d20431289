"""sovereign:api.public: a private API by default; a public one only when the stack says so."""

from __future__ import annotations

import pulumi
import pytest

from tools.mockrun import DELETE, Run, evaluate

LB = "hcloud:index/loadBalancer:LoadBalancer"
LB_NETWORK = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork"
FIREWALL = "hcloud:index/firewall:Firewall"


def run_with(overrides: dict[str, object]) -> Run:
    run = evaluate("secondary", overrides)
    assert run.error is None, run.error
    return run


def api_lb(run: Run) -> tuple[dict[str, object], dict[str, object]]:
    lb = run.one(LB, "omantel-hel1-2-api-lb")
    net = run.one(LB_NETWORK, "omantel-hel1-2-api-lb-net")
    return lb.inputs, net.inputs


def test_by_default_the_ha_api_has_no_public_interface_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_a, **_k: warned.append(message))
    run = run_with({"api": DELETE})
    lb, net = api_lb(run)
    assert net["enablePublicInterface"] is False
    assert lb["labels"]["openova.io/api-public"] == "false"  # type: ignore[index]
    assert run.one(FIREWALL).inputs["labels"]["openova.io/api-public"] == "false"
    # The deployer reaches the API at the load balancer's private address.
    assert run.outputs["apiServer"] == "https://10.0.1.253:6443"
    assert not [w for w in warned if "api.public is true" in w]


def test_a_public_api_is_explicit_labelled_and_warned_on_every_preview(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_a, **_k: warned.append(message))
    run = run_with({"api": {"public": True}})
    lb, net = api_lb(run)
    assert net["enablePublicInterface"] is True
    assert lb["labels"]["openova.io/api-public"] == "true"  # type: ignore[index]
    assert run.one(FIREWALL).inputs["labels"]["openova.io/api-public"] == "true"
    assert run.outputs["apiServer"] == f"https://{run.outputs['apiLoadBalancerIp']}:6443"
    assert [w for w in warned if "sovereign:api.public is true" in w]


def test_a_world_open_api_without_api_public_is_refused() -> None:
    run = evaluate("primary", {"access": {"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]}, "api": DELETE})
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:access.apiAllowedCidrs" in message
    assert "set sovereign:api.public: true" in message
    run = evaluate(
        "primary", {"access": {"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]}, "api": {"public": True}}
    )
    assert run.error is None, run.error
    assert run.one(FIREWALL).inputs["labels"]["openova.io/api-public"] == "true"


def test_the_public_api_warning_names_the_endpoint_the_region_really_has() -> None:
    from checks.hetzner import api_public_notice
    from tests.helpers import cfg

    ha = api_public_notice(cfg("secondary", api={"public": True}))
    assert ha is not None
    assert "answers the whole internet on 6443 (the API load balancer's public interface" in ha
    for no_lb in (
        cfg("primary", api={"public": True}),  # one server
        cfg("secondary", api={"public": True, "loadBalancer": False}),
    ):
        notice = api_public_notice(no_lb)
        assert notice is not None
        assert "load balancer's public interface" not in notice
        assert "this region has no API load balancer" in notice
        assert "to sovereign:access.apiAllowedCidrs (203.0.113.10/32), no wider" in notice
    world = api_public_notice(
        cfg(
            "primary",
            api={"public": True},
            access={"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]},
        )
    )
    assert world is not None
    assert "(0.0.0.0/0, ::/0), which covers 0.0.0.0/0 and ::/0, the whole internet" in world
