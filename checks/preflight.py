"""Checks across config objects, run before any resource is declared.

Each check returns `Problem`s instead of raising, so one error lists every mistake at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final

from checks import versions
from checks.day2 import day2_problems
from checks.hetzner import api_public_problems, load_balancer_problems, server_type_problems
from checks.tenants import quota_preflight_problems
from checks.workers import volume_locality_problems, worker_problems
from config import grammar
from config.errors import Problem
from config.models import StackConfig, parse_config
from render.cloudinit import (
    K3S_TOKEN_LENGTH,
    USER_DATA_CAP,
    WORST_CASE_IPV4,
    render_user_data,
    worst_case_boot,
)
from render.naming import hetzner_labels, region_label
from render.pod_security import evaluate, refusal_message, vcluster_pod_spec
from render.slots import SLOTS, active_vclusters
from render.vcluster import namespace_name, vcluster_values


def network_problems(cfg: StackConfig) -> list[Problem]:
    net = cfg.network
    network = ipaddress.ip_network(net.cidr)
    subnet = ipaddress.ip_network(net.subnet_cidr)
    problems: list[Problem] = []
    if not subnet.subnet_of(network):  # type: ignore[arg-type]
        problems.append(
            Problem(
                "sovereign:network.subnetCidr",
                repr(net.subnet_cidr),
                f"a subnet inside sovereign:network.cidr {net.cidr}",
            )
        )
    # Hetzner's gateway takes the network's first address; the subnet's ends are unusable.
    reserved = {network.network_address + 1, subnet.network_address, subnet.broadcast_address}
    for ip in cfg.control_plane_ips:
        address = ipaddress.ip_address(ip)
        if address not in subnet or address in reserved:
            problems.append(
                Problem(
                    "sovereign:network.firstControlPlaneIp",
                    repr(net.first_control_plane_ip),
                    f"control-plane address {ip} must be a usable host of {net.subnet_cidr} "
                    f"({cfg.control_plane.count} consecutive addresses are taken)",
                )
            )
            break
    ranges = {
        "sovereign:network.cidr": net.cidr,
        "sovereign:network.podCidr": cfg.pod_cidr,
        "sovereign:network.serviceCidr": cfg.service_cidr,
    }
    keys = list(ranges)
    for i, key in enumerate(keys):
        for other in keys[i + 1 :]:
            if ipaddress.ip_network(ranges[key]).overlaps(ipaddress.ip_network(ranges[other])):
                problems.append(
                    Problem(key, repr(ranges[key]), f"must not overlap {other} {ranges[other]}")
                )
    # Every node takes a /24 of the pod range; a range with fewer blocks than nodes (servers
    # and the most workers every pool can have) leaves the last ones without pod addresses.
    pods = ipaddress.ip_network(cfg.pod_cidr)
    blocks = 2 ** max(grammar.NODE_MASK_SIZE - pods.prefixlen, 0)
    nodes = cfg.control_plane.count + sum(p.most_servers for p in cfg.workers.values())
    if blocks < nodes:
        problems.append(
            Problem(
                "sovereign:network.podCidr",
                repr(cfg.pod_cidr),
                f"room for {nodes} nodes of a /{grammar.NODE_MASK_SIZE} each "
                f"(kube-controller-manager --node-cidr-mask-size); this range holds {blocks}",
            )
        )
    lb = cfg.load_balancer
    if lb.enabled:
        lb_ip = ipaddress.ip_address(lb.private_ip)
        if lb_ip not in subnet or lb_ip in reserved or lb.private_ip in cfg.control_plane_ips:
            problems.append(
                Problem(
                    "sovereign:loadBalancer.privateIp",
                    repr(lb.private_ip),
                    f"a free host address of {net.subnet_cidr}, not a server's",
                )
            )
        if lb.http_node_port == lb.https_node_port:
            problems.append(
                Problem(
                    "sovereign:loadBalancer.httpsNodePort",
                    str(lb.https_node_port),
                    "a node port other than httpNodePort",
                )
            )
    return problems


def label_problems(cfg: StackConfig) -> list[Problem]:
    """Names that become Hetzner and Kubernetes label values must be valid label values.

    The sovereign name and region key are checked one by one; what they make together (the
    region label `<name>-<key>`) is checked here, on the very values the program sends.
    """
    values = {**hetzner_labels(cfg), "node-label openova.io/region": region_label(cfg)}
    problems: list[Problem] = []
    for label, value in values.items():
        try:
            grammar.label_value(value)
        except ValueError as err:
            problems.append(
                Problem(
                    "sovereign:name / sovereign:region.key",
                    repr(value),
                    f"label {label}: {err}",
                )
            )
    return problems


def pod_security_problems(cfg: StackConfig) -> list[Problem]:
    """Refuse a namespace whose enforce level would refuse its own vCluster pod.

    The incident: MGMT shipped with enforce=restricted, the syncer runs as root, PodSecurity
    refused the StatefulSet's pod and the region showed 5/6 vClusters for 14 minutes.
    """
    problems: list[Problem] = []
    for vcluster in active_vclusters(cfg):
        spec = cfg.vclusters.spec(vcluster)
        pss = spec.pod_security
        pod = vcluster_pod_spec(vcluster_values(cfg, spec))
        violations = evaluate(pod, pss.enforce, pss.version)
        if violations:
            problems.append(
                Problem(
                    f"sovereign:vclusters.{vcluster}.podSecurity.enforce",
                    repr(pss.enforce),
                    refusal_message(namespace_name(vcluster), pss.enforce, pss.version, violations)
                    + f"; the vCluster pod would never start. Use 'baseline', or harden "
                    f"sovereign:vclusters.{vcluster}.security until every check passes"
                    + (
                        ""
                        if spec.rootless
                        else f" (sovereign:vclusters.{vcluster}.rootless is false: the chart's "
                        "pod runs as root, which 'restricted' refuses; only a vCluster created "
                        "rootless passes it)"
                    ),
                )
            )
    return problems


def gating_problems(cfg: StackConfig) -> list[Problem]:
    """A vCluster switched on outside its role's regions is an error, never silently dropped."""
    problems: list[Problem] = []
    for slot in SLOTS:
        if slot.vcluster is None or cfg.region.role in slot.roles:
            continue
        spec = cfg.vclusters.spec(slot.vcluster)
        roles = " and ".join(sorted(slot.roles))
        why = (
            f"{slot.vcluster.upper()} (slot {slot.number}) runs only in {roles} regions "
            f"and this is a {cfg.region.role} (DoD A4: primary = MGMT + DMZ, each "
            "secondary = DMZ + RTZ)"
        )
        if spec.enabled:
            problems.append(
                Problem(
                    f"sovereign:vclusters.{slot.vcluster}.enabled",
                    "true",
                    f"{why}; remove the key",
                )
            )
        # Settings of a vCluster this region never runs would be silently ignored: a reviewer
        # reading `rtz.podSecurity` in a primary's file would believe RTZ runs there.
        for field in sorted(spec.model_fields_set - {"enabled"}):
            key = type(spec).model_fields[field].alias or field
            problems.append(
                Problem(
                    f"sovereign:vclusters.{slot.vcluster}.{key}",
                    "(set)",
                    f"has no effect: {why}; remove it",
                )
            )
    return problems


def size_problems(cfg: StackConfig) -> list[Problem]:
    """Refuse at preview any server whose worst-case user_data exceeds Hetzner's cap."""
    problems: list[Problem] = []
    token = "x" * K3S_TOKEN_LENGTH
    for node in range(cfg.control_plane.count):
        boot = worst_case_boot(cfg, node)
        size = len(render_user_data(cfg, node, WORST_CASE_IPV4, token, boot).encode())
        if size > USER_DATA_CAP:
            problems.append(
                Problem(
                    f"sovereign:controlPlane (server {node + 1} user_data)",
                    f"{size} bytes",
                    f"at most {USER_DATA_CAP} bytes (Hetzner's user_data cap); shorten "
                    "sovereign:access.sshPublicKeys or sovereign:registryMirror.projects",
                )
            )
    return problems


CHART_VERSION_KEYS: Final = {
    "cilium": "sovereign:cilium.version",
    "cert-manager": "sovereign:certManager.version",
}


def mirror_problems(cfg: StackConfig) -> list[Problem]:
    """With the mirror on, refuse at preview an image whose registry has no proxy project.

    Which registries the charts pull from is known only from their rendered images, so this
    check renders the releases (0.3-0.8 s, cached per chart and values): only when the mirror
    is on. With it off every image comes from its upstream registry and nothing depends on it.
    """
    if not cfg.registry_mirror.enabled:
        return []
    from checks.rendered import mirror_problems as rendered_mirror_problems
    from checks.rendered import render_releases
    from render.helm import RenderError
    from render.releases import releases

    try:
        rendered = render_releases(cfg)
    except RenderError as err:
        failing = next(
            (r for r in releases(cfg) if r.chart.package.name in str(err)), releases(cfg)[0]
        )
        return [
            Problem(
                CHART_VERSION_KEYS.get(failing.chart.name, f"release {failing.name}"),
                repr(failing.chart.version),
                f"a chart the mirror check can render ({err})",
            )
        ]
    return rendered_mirror_problems(cfg, rendered)


def preflight(cfg: StackConfig) -> list[Problem]:
    return [
        *network_problems(cfg),
        *label_problems(cfg),
        *server_type_problems(cfg),
        *load_balancer_problems(cfg),
        *api_public_problems(cfg),
        *worker_problems(cfg),
        *volume_locality_problems(cfg),
        *versions.problems(cfg),
        *gating_problems(cfg),
        *pod_security_problems(cfg),
        *size_problems(cfg),
        *day2_problems(cfg),
        *mirror_problems(cfg),
        *quota_preflight_problems(cfg),
    ]


def parse(
    raw: Mapping[str, Any], stack: str = "", secret_keys: frozenset[str] = frozenset()
) -> StackConfig:
    """The models' validation, then every check across them: one error lists every problem."""
    return parse_config(raw, stack, secret_keys, check=preflight)
