"""Property-based: any config either evaluates or fails with the clear config error, nothing else.

The pure parser is exercised on many generated configs over every key of the model tree (the
committed stacks with every default written out); network sizes and address families get their
own generators. A smaller sample runs the whole program under mocks to show that a refused config
declares no resource and an accepted one completes.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.preflight import parse as parse_config
from config import grammar
from config.errors import SovereignConfigError
from config.models import StackConfig
from render.cloudinit import cluster_dns, render_agent_user_data, render_user_data
from tools.mockrun import evaluate, stack_config

BASES = {stack: stack_config(stack) for stack in ("primary", "secondary")}
# Every key of the model tree, defaults included, so generated values reach keys no stack sets.
FULL = {
    stack: parse_config(raw, stack).model_dump(by_alias=True, mode="json")
    for stack, raw in BASES.items()
}
# Settings of the vCluster a role never runs are refused (checks/preflight.py, DoD A4): the
# primary's tree has no RTZ, the secondary's no MGMT.
del FULL["primary"]["vclusters"]["rtz"], FULL["secondary"]["vclusters"]["mgmt"]


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


ALL_PATHS = sorted({p for tree in FULL.values() for p in leaf_paths(tree)}, key=str)


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
    st.dictionaries(
        st.sampled_from(["runAsUser", "runAsNonRoot", "capabilities", "seccompProfile", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers())),
        max_size=3,
    ),
    st.sampled_from(
        [
            "0.0.0.0/0",
            "::/0",
            "0.0.0.0/1",
            "10.0.0.0/8",
            "10.0.1.0/24",
            "10.0.0.1/16",
            "2001:db8::/32",
            "8.8.8.0/24",
            "999.1.1.1",
            "v1.31.4+k3s1",
            "1.18",
            "^1.18",
            "latest",
            "restricted",
            "privileged",
            "fsn1",
            "ash",
            "sin-2",
            "primary",
            "secondary",
            "cx11",
            "https://harbor.example.com",
            "harbor.example.com:5000",
            "sha256:" + "a" * 64,
            "-leading-dash",
        ]
    ),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[tuple[Any, ...]]]:
    stack = draw(st.sampled_from(sorted(FULL)))
    raw = copy.deepcopy(draw(st.sampled_from([BASES[stack], FULL[stack]])))
    touched: list[tuple[Any, ...]] = []
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
        touched.append(path)
    return stack, raw, touched


def outcome(
    stack: str, raw: dict[str, Any], secret_keys: frozenset[str] = frozenset()
) -> StackConfig | SovereignConfigError:
    try:
        return parse_config(raw, stack, secret_keys)
    except SovereignConfigError as err:
        return err


def assert_clean_refusal(stack: str, result: SovereignConfigError) -> None:
    assert result.problems
    message = str(result)
    assert message.startswith(f"invalid sovereign configuration in stack '{stack}'")
    for problem in result.problems:
        assert problem.path.startswith("sovereign:")
        assert problem.allowed
        assert f"  - {problem.path} = " in message
    assert "Traceback" not in message


def assert_usable(cfg: StackConfig) -> None:
    """What an accepted config derives must derive: the renderers run on it without raising."""
    dns = ipaddress.ip_address(cluster_dns(cfg))
    assert dns in ipaddress.ip_network(cfg.service_cidr)
    for node in range(cfg.control_plane.count):
        assert render_user_data(cfg, node, "198.51.100.7", "t" * 64)
    for pool in cfg.workers:
        assert render_agent_user_data(cfg, pool, "t" * 64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_any_config_is_accepted_or_refused_with_key_paths(
    case: tuple[str, dict[str, Any], list[tuple[Any, ...]]],
) -> None:
    stack, raw, _ = case
    result = outcome(stack, raw)  # any other exception fails the test: that is the property
    if isinstance(result, SovereignConfigError):
        assert_clean_refusal(stack, result)
    else:
        assert_usable(result)


NASTY: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    float("nan"),
    "",
    " ",
    "\x00",
    "ä中🙂",
    "a" * 300,
    "UPPER",
    "with space",
    "../etc",
    [],
    ["x"],
    {},
    {"a": 1},
]


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: ".".join(map(str, p)))
def test_every_key_takes_any_value_without_a_traceback(path: tuple[Any, ...]) -> None:
    # Each key of the model tree, every free-text field among them, gets every kind of value.
    in_primary = path in leaf_paths(FULL["primary"])
    vcluster = bool(path) and path[0] == "vclusters" and "mgmt" not in path
    stack = "secondary" if vcluster or not in_primary else "primary"
    for value in NASTY:
        raw = copy.deepcopy(FULL[stack])
        parent: Any = raw
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = copy.deepcopy(value)
        result = outcome(stack, raw)
        if isinstance(result, SovereignConfigError):
            assert_clean_refusal(stack, result)
            top = f"sovereign:{path[0]}"
            assert any(p.path.startswith(top) for p in result.problems) or top in str(result), (
                path,
                value,
                str(result),
            )
        else:
            assert_usable(result)


# --- network sizes and address families ---------------------------------------------------------


@st.composite
def any_network(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        prefix = draw(st.integers(0, 32))
        address = draw(st.integers(0, 2**32 - 1))
        return str(ipaddress.IPv4Network((address, prefix), strict=False))
    prefix = draw(st.integers(0, 128))
    address = draw(st.integers(0, 2**128 - 1))
    return str(ipaddress.IPv6Network((address, prefix), strict=False))


@st.composite
def private_network(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]))
    parent = ipaddress.IPv4Network(base)
    prefix = draw(st.integers(parent.prefixlen, 32))
    offset = draw(st.integers(0, parent.num_addresses - 1))
    return str(ipaddress.IPv4Network((int(parent.network_address) + offset, prefix), strict=False))


network_value = st.one_of(any_network(), private_network())
NETWORK_KEYS = ("cidr", "subnetCidr", "podCidr", "serviceCidr")


@st.composite
def network_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(BASES["primary"])
    network = {key: draw(network_value) for key in NETWORK_KEYS if draw(st.booleans())}
    if draw(st.booleans()):
        if draw(st.booleans()):
            first = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        else:
            first = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
        network["firstControlPlaneIp"] = str(first)
    elif "subnetCidr" in network:
        subnet = ipaddress.ip_network(network["subnetCidr"])
        network["firstControlPlaneIp"] = str(subnet[min(2, subnet.num_addresses - 1)])
    raw["network"] = network
    raw["controlPlane"]["count"] = draw(st.sampled_from([1, 3]))
    return raw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_configs())
def test_network_sizes_and_families_are_accepted_only_when_every_consumer_takes_them(
    raw: dict[str, Any],
) -> None:
    result = outcome("primary", raw)
    if isinstance(result, SovereignConfigError):
        assert_clean_refusal("primary", result)
        return
    assert_usable(result)
    cfg = result
    private = [ipaddress.IPv4Network(r) for r in grammar.FACTS["hetznerNetwork"]["privateRanges"]]
    network = ipaddress.ip_network(cfg.network.cidr)
    subnet = ipaddress.ip_network(cfg.network.subnet_cidr)
    pods = ipaddress.ip_network(cfg.pod_cidr)
    services = ipaddress.ip_network(cfg.service_cidr)
    for net in (network, subnet, pods, services):
        assert isinstance(net, ipaddress.IPv4Network)
    assert isinstance(network, ipaddress.IPv4Network)
    assert isinstance(subnet, ipaddress.IPv4Network)
    assert any(network.subnet_of(r) for r in private)
    assert network.prefixlen <= 24
    assert subnet.subnet_of(network)
    assert subnet.prefixlen <= 30
    assert 12 <= services.prefixlen <= 28  # kube-apiserver, k3s cluster-dns
    assert 24 - pods.prefixlen >= math.ceil(math.log2(cfg.control_plane.count))  # a /24 per node
    assert not network.overlaps(pods)
    assert not network.overlaps(services)
    assert not pods.overlaps(services)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from([8, 12, 16, 20, 22, 24]), min_size=3, max_size=3),
    st.lists(st.integers(0, 255), min_size=6, max_size=6),
)
def test_overlapping_ranges_are_always_refused(prefixes: list[int], octets: list[int]) -> None:
    # Sizes each consumer takes on its own, so only the overlap can be wrong.
    network, pods, services = (
        str(ipaddress.ip_network(f"10.{octets[2 * i]}.{octets[2 * i + 1]}.0/{p}", strict=False))
        for i, p in enumerate((prefixes[0], prefixes[1], max(prefixes[2], 12)))
    )
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
        assert not isinstance(result, SovereignConfigError), str(result)


# --- SSH and the whole internet ------------------------------------------------------------------


@st.composite
def split_family(draw: st.DrawFn, whole: str) -> list[str]:
    """The whole address family cut into random pieces: same addresses, other spelling."""
    pieces = [ipaddress.ip_network(whole)]
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(pieces) - 1))
        piece = pieces.pop(index)
        if piece.prefixlen >= 24:
            pieces.append(piece)
            continue
        pieces.extend(piece.subnets(prefixlen_diff=draw(st.integers(1, 2))))
    return [str(p) for p in draw(st.permutations(pieces))][:20]


@settings(max_examples=80, deadline=None)
@given(
    st.one_of(split_family("0.0.0.0/0"), split_family("::/0")),
    st.lists(st.sampled_from(["203.0.113.10/32", "2001:db8::/48"]), max_size=2),
)
def test_ssh_open_to_the_world_is_refused_however_it_is_written(
    world: list[str], extra: list[str]
) -> None:
    sources = (world + extra)[:20]
    raw = copy.deepcopy(BASES["primary"])
    raw["access"]["sshAllowedCidrs"] = sources
    result = outcome("primary", raw)
    assert isinstance(result, SovereignConfigError)
    assert "sovereign:access.sshAllowedCidrs" in str(result)
    assert "SSH open to the whole internet is refused" in str(result)


@settings(max_examples=40, deadline=None)
@given(split_family("0.0.0.0/0"))
def test_ssh_missing_one_piece_of_the_world_is_not_the_world(world: list[str]) -> None:
    if len(world) < 2:
        return
    raw = copy.deepcopy(BASES["primary"])
    raw["access"]["sshAllowedCidrs"] = world[1:]
    result = outcome("primary", raw)
    assert not isinstance(result, SovereignConfigError), str(result)


# --- secrets ---------------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["primary", "secondary"]),
    st.data(),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12),
)
def test_a_secret_key_is_refused_by_name_and_never_shown(
    stack: str, data: st.DataObject, token: str
) -> None:
    raw = copy.deepcopy(FULL[stack])
    paths = [p for p in leaf_paths(raw) if p and not isinstance(raw[p[0]], str)] + [("name",)]
    path = data.draw(st.sampled_from(paths))
    secret = f"S3cret{token}"
    parent: Any = raw
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = data.draw(st.sampled_from([secret, f"{secret}/16", f"10.0.0.1 {secret}"]))
    result = outcome(stack, raw, frozenset({path[0]}))
    assert isinstance(result, SovereignConfigError)
    assert secret not in str(result)
    assert any(
        p.path == f"sovereign:{path[0]}" and "this key is not a secret" in p.allowed
        for p in result.problems
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_the_whole_program_never_declares_a_partial_stack(
    case: tuple[str, dict[str, Any], list[tuple[Any, ...]]],
) -> None:
    stack, raw, _ = case
    expected = outcome(stack, raw)
    run = evaluate(stack, raw=raw)
    if isinstance(expected, SovereignConfigError):
        assert isinstance(run.error, SovereignConfigError)
        assert run.registrations == []
    else:
        assert run.error is None
        assert run.of_type("kubernetes:helm.sh/v3:Release"), "an accepted config deploys its slots"
