"""Property-based: any config either evaluates or fails with the clear config error, nothing else.

The pure parser is exercised on many generated configs; a smaller sample runs the whole program
under mocks to show that a refused config declares no resource and an accepted one completes.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.preflight import parse as parse_config
from config.errors import SovereignConfigError
from config.models import StackConfig
from tools.mockrun import evaluate, stack_config

BASES = {stack: stack_config(stack) for stack in ("primary", "secondary")}


def leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        out = [path] if path else []
        for key, value in node.items():
            out += leaf_paths(value, (*path, key))
        return out
    if isinstance(node, list):
        out = [path]
        for i, value in enumerate(node):
            out += leaf_paths(value, (*path, i))
        return out
    return [path]


weird_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.just(""),
    st.text(alphabet="ÄöüßЖ中文🙂\u200b\x00", min_size=1, max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.builds(lambda: ["x"] * 500),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.sampled_from(
        [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8",
            "10.0.1.0/24",
            "999.1.1.1",
            "v1.31.4+k3s1",
            "restricted",
            "privileged",
            "fsn1",
            "primary",
            "secondary",
            "cx11",
        ]
    ),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    stack = draw(st.sampled_from(sorted(BASES)))
    raw = copy.deepcopy(BASES[stack])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = leaf_paths(raw)
        path = draw(st.sampled_from(paths)) if paths else ()
        action = draw(st.sampled_from(["replace", "delete", "unknown"]))
        parent: Any = raw
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1] if path else None
        if action == "replace" and last is not None:
            parent[last] = copy.deepcopy(draw(weird_values))
        elif action == "delete" and isinstance(parent, dict) and last is not None:
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = copy.deepcopy(draw(weird_values))
    return stack, raw


def outcome(stack: str, raw: dict[str, Any]) -> StackConfig | SovereignConfigError:
    try:
        return parse_config(raw, stack)
    except SovereignConfigError as err:
        return err


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_any_config_is_accepted_or_refused_with_key_paths(case: tuple[str, dict[str, Any]]) -> None:
    stack, raw = case
    result = outcome(stack, raw)  # any other exception fails the test: that is the property
    if isinstance(result, SovereignConfigError):
        assert result.problems
        message = str(result)
        assert message.startswith(f"invalid sovereign configuration in stack '{stack}'")
        for problem in result.problems:
            assert problem.path.startswith("sovereign:")
            assert problem.allowed
            assert f"  - {problem.path} = " in message
        assert "Traceback" not in message


cidrs = st.builds(
    lambda a, b, prefix: str(ipaddress.ip_network(f"10.{a}.{b}.0/{prefix}", strict=False)),
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([8, 12, 16, 20, 24]),
)


@settings(max_examples=200, deadline=None)
@given(cidrs, cidrs, cidrs)
def test_overlapping_ranges_are_always_refused(network: str, pods: str, services: str) -> None:
    raw = copy.deepcopy(BASES["primary"])
    raw["network"] = {
        "cidr": network,
        "podCidr": pods,
        "serviceCidr": services,
        "subnetCidr": network,
        "firstControlPlaneIp": str(ipaddress.ip_network(network)[2]),
    }
    nets = [ipaddress.ip_network(c) for c in (network, pods, services)]
    overlapping = any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    result = outcome("primary", raw)
    if overlapping:
        assert isinstance(result, SovereignConfigError)
        assert "must not overlap" in str(result)
    else:
        assert not isinstance(result, SovereignConfigError) or "must not overlap" not in str(result)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_the_whole_program_never_declares_a_partial_stack(case: tuple[str, dict[str, Any]]) -> None:
    stack, raw = case
    expected = outcome(stack, raw)
    run = evaluate(stack, raw=raw)
    if isinstance(expected, SovereignConfigError):
        assert isinstance(run.error, SovereignConfigError)
        assert run.registrations == []
    else:
        assert run.error is None
        assert run.of_type("kubernetes:helm.sh/v3:Release"), "an accepted config deploys its slots"
