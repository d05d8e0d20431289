"""Only server types Hetzner still sells in the stack's location; deprecated ones name a successor."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from checks.hetzner import server_type_problems
from checks.preflight import parse
from config.models import ControlPlane, StackConfig
from config.server_types import CATALOGUE, DATA_FILE
from tools.mockrun import evaluate, stack_config

LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


def refusal(overrides: dict[str, Any], stack: str = "primary") -> str:
    run = evaluate(stack, overrides)
    assert run.error is not None, "expected the stack to be refused"
    assert run.registrations == [], "refused before any resource is declared"
    return str(run.error)


def test_catalogue_carries_its_sources_and_date() -> None:
    raw = yaml.safe_load(DATA_FILE.read_text())
    assert raw["checked"]
    assert any("2025-10-16" in source for source in raw["sources"])
    assert "published offer" in DATA_FILE.read_text()


def test_every_successor_is_current_and_at_least_as_large() -> None:
    deprecated = [t for t in CATALOGUE.types.values() if t.successor is not None]
    assert {t.name for t in deprecated} >= {"cx22", "cx32", "cx42", "cx52", "cpx11", "cpx31"}
    for old in deprecated:
        new = CATALOGUE.types[old.successor or ""]
        assert new.successor is None, f"{old.name} -> {new.name} is itself deprecated"
        assert new.vcpu >= old.vcpu
        assert new.memory_gb >= old.memory_gb
        assert new.disk_gb >= old.disk_gb
        assert set(new.locations) >= {"fsn1", "nbg1", "hel1"}
    for server_type in CATALOGUE.types.values():
        assert set(server_type.locations) <= set(LOCATIONS)


def test_default_and_committed_stacks_order_a_current_type_with_cpx31s_capacity(
    primary: Any, secondary: Any
) -> None:
    default = ControlPlane.model_fields["server_type"].default
    chosen = CATALOGUE.types[default]
    assert chosen.successor is None
    assert chosen.vcpu >= 4
    assert chosen.memory_gb >= 8
    assert chosen.disk_gb >= 160
    for run, location in ((primary, "fsn1"), (secondary, "hel1")):
        for server in run.of_type("hcloud:index/server:Server"):
            server_type = server.inputs["serverType"]
            assert CATALOGUE.refusal(server_type, location) is None
            assert CATALOGUE.types[server_type].vcpu >= 4


@pytest.mark.parametrize(
    ("old", "successor"), [("cpx31", "cpx32"), ("cx22", "cx23"), ("cpx11", "cpx22")]
)
def test_deprecated_type_is_refused_at_preview_naming_its_successor(
    old: str, successor: str
) -> None:
    message = refusal({"controlPlane": {"serverType": old}})
    assert f"sovereign:controlPlane.serverType = '{old}': deprecated by Hetzner" in message
    assert "no longer orderable in fsn1 since 2026-01-01" in message
    assert f"Its successor is {successor} (" in message


def test_unknown_type_is_refused_listing_the_types_on_sale() -> None:
    message = refusal({"controlPlane": {"serverType": "cx21"}})
    assert (
        "sovereign:controlPlane.serverType = 'cx21': not a Hetzner server type on sale" in message
    )
    assert "current types: cx23, cx33" in message
    assert "cpx31" not in message.split("current types:")[1]


def in_location(location: str, server_type: str | None = None) -> StackConfig:
    """The primary stack moved to `location` (the region key's own rules are not judged here)."""
    cfg = parse(stack_config("primary"), "primary")
    region = cfg.region.model_copy(update={"location": location, "key": location})
    plane = cfg.control_plane
    if server_type is not None:
        plane = plane.model_copy(update={"server_type": server_type})
    return cfg.model_copy(update={"region": region, "control_plane": plane})


def test_type_not_sold_in_the_location_is_refused() -> None:
    (problem,) = server_type_problems(in_location("ash", "cax21"))
    assert (problem.path, problem.value) == ("sovereign:controlPlane.serverType", "'cax21'")
    assert problem.allowed.startswith("not sold in ash (sold in fsn1, nbg1, hel1)")
    assert "types sold in ash: ccx13" in problem.allowed
    # The default is an EU/Singapore type: an ash stack must choose, and is told what exists.
    (default,) = server_type_problems(in_location("ash"))
    assert default.allowed.startswith("not sold in ash")
    assert server_type_problems(in_location("sin")) == []


def test_legacy_cpx_types_are_still_accepted_where_hetzner_still_sells_them() -> None:
    assert server_type_problems(in_location("hil", "cpx31")) == []
    (problem,) = server_type_problems(in_location("nbg1", "cpx31"))
    assert "no longer orderable in nbg1 since 2026-01-01; it is still sold only in ash, hil" in (
        problem.allowed
    )
