"""Worker pools judged across keys: where a type is sold, group sizes, the ingress pool, size."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final, cast

from config.errors import Problem
from config.models import StackConfig
from config.server_types import CATALOGUE, Catalogue
from config.workers import SPREAD_GROUP_MAX, Taint
from render import autoscaler
from render.cloudinit import K3S_TOKEN_LENGTH, USER_DATA_CAP, render_agent_user_data
from render.hcloud import HCLOUD_VOLUMES
from render.naming import worker_name
from render.slots import active_vclusters

# Kubernetes refuses a Secret over 1 MiB (kubernetes.io/docs/concepts/configuration/secret,
# "Restrictions": "Individual Secrets are limited to 1MiB in size"; checked 2026-12-04). The
# autoscaler's cluster config holds every autoscaled pool's cloud-init in one Secret.
SECRET_CAP: Final = 1024 * 1024


def worker_problems(cfg: StackConfig, catalogue: Catalogue = CATALOGUE) -> list[Problem]:
    problems: list[Problem] = []
    for pool, spec in sorted(cfg.workers.items()):
        key = f"sovereign:workers.{pool}"
        why = catalogue.refusal(spec.server_type, cfg.region.location)
        if why is not None:
            problems.append(Problem(f"{key}.serverType", repr(spec.server_type), why))
        if spec.placement_group and spec.most_servers > SPREAD_GROUP_MAX:
            problems.append(
                Problem(
                    f"{key}.autoscaling.max" if spec.autoscaling else f"{key}.count",
                    str(spec.most_servers),
                    f"at most {SPREAD_GROUP_MAX} servers in the pool's spread placement group "
                    "(Hetzner's limit; cluster-autoscaler's Hetzner provider refuses to start "
                    "beyond it too); split the pool, or set placementGroup: false to give up "
                    "the one-server-per-host guarantee",
                )
            )
    problems += autoscaling_problems(cfg)
    problems += _ingress_pool_problems(cfg)
    problems += _subnet_problems(cfg)
    problems += _size_problems(cfg)
    problems += taint_problems(cfg)
    return problems


def _tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """Kubernetes' rule: key (empty with Exists: every key), value unless Exists, effect."""
    if toleration.get("effect") not in (None, "", taint.effect):
        return False
    key = toleration.get("key")
    if toleration.get("operator") == "Exists":
        return key in (None, "", taint.key)
    return key == taint.key and str(toleration.get("value", "")) == taint.value


def _blanket(toleration: Mapping[str, Any]) -> bool:
    return toleration.get("operator") == "Exists" and not toleration.get("key")


def taint_problems(cfg: StackConfig) -> list[Problem]:
    """Refuse a pool taint no pod the program deploys tolerates.

    Pods that tolerate every taint (Cilium's agent and operator) run anywhere and do not count:
    with only those, nothing the region is for could ever run on the pool. Judged on the
    releases as Helm renders them (cached), so a toleration the chart drops is not counted.
    """
    tainted = [
        (pool, index, taint)
        for pool, spec in sorted(cfg.workers.items())
        for index, taint in enumerate(spec.taints)
        if taint.effect != "PreferNoSchedule" and spec.most_servers
    ]
    if not tainted:
        return []
    from checks.rendered import render_releases
    from render.manifests import pod_templates

    specific: list[list[Mapping[str, Any]]] = []
    for release in render_releases(cfg):
        for pod in pod_templates(release.objects):
            raw = pod.spec.get("tolerations")
            tolerations = [
                cast(Mapping[str, Any], t)
                for t in (cast(list[object], raw) if isinstance(raw, list) else [])
                if isinstance(t, Mapping)
            ]
            if not any(_blanket(t) for t in tolerations):
                specific.append(tolerations)
    return [
        Problem(
            f"sovereign:workers.{pool}.taints[{index}]",
            repr(taint.flag),
            "a taint some pod of the region tolerates; none does (only pods that tolerate "
            "every taint, such as Cilium, would run on the pool), so the pool would stay "
            "empty: tolerate it in sovereign:vclusters.<name>.tolerations, or remove it",
        )
        for pool, index, taint in tainted
        if not any(_tolerates(t, taint) for tolerations in specific for t in tolerations)
    ]


def _ingress_pool_problems(cfg: StackConfig) -> list[Problem]:
    pool = cfg.load_balancer.pool
    if pool is None:
        return []
    spec = cfg.workers.get(pool)
    if spec is None:
        pools = ", ".join(sorted(cfg.workers)) or "none are configured"
        return [
            Problem(
                "sovereign:loadBalancer.pool",
                repr(pool),
                f"the name of a pool in sovereign:workers ({pools}), or unset for the "
                "control-plane servers",
            )
        ]
    if spec.autoscaling is not None and spec.autoscaling.min == 0:
        return [
            Problem(
                "sovereign:loadBalancer.pool",
                repr(pool),
                f"a pool that always has servers: {pool} is autoscaled with autoscaling.min 0, "
                "so the load balancer could be left without a target and the Gateway without a "
                f"listener; set sovereign:workers.{pool}.autoscaling.min to 1 or more",
            )
        ]
    if spec.autoscaling is None and spec.static_count == 0:
        return [
            Problem(
                "sovereign:loadBalancer.pool",
                repr(pool),
                f"a pool with servers: {pool} has count 0, so the load balancer would have no "
                "target and the Gateway would listen nowhere",
            )
        ]
    return []


def autoscaling_problems(cfg: StackConfig) -> list[Problem]:
    """What cluster-autoscaler's Hetzner provider needs of an autoscaled pool (slot 06)."""
    problems: list[Problem] = []
    pools = autoscaler.autoscaled_pools(cfg)
    if pools and cfg.cloud_controller != "hetzner":
        problems.append(
            Problem(
                "sovereign:cloudController",
                repr(cfg.cloud_controller),
                f"'hetzner' while pools are autoscaled ({', '.join(pools)}): cluster-autoscaler "
                "finds a node's server by the providerID `hcloud://<id>` the Hetzner CCM sets; "
                "k3s's own controller sets `k3s://<node>`, which it never matches, so it could "
                "not remove a single server (render/cluster_autoscaler.yaml); hand the nodes to "
                "the CCM first (docs/day2.md) or give the pools a count",
            )
        )
    if pools:
        worst = autoscaler.cluster_config_json(
            cfg, {pool: _worst_agent_user_data(cfg, pool) for pool in pools}
        )
        size = len(worst.encode())
        if size > SECRET_CAP:
            problems.append(
                Problem(
                    "sovereign:workers (autoscaled pools' cloud-init)",
                    f"{size} bytes",
                    f"at most {SECRET_CAP} bytes in all (Kubernetes' Secret size limit; the "
                    "autoscaler reads every autoscaled pool's cloud-init from one Secret): "
                    "autoscale fewer pools",
                )
            )
    return problems


def _subnet_problems(cfg: StackConfig) -> list[Problem]:
    if not cfg.workers:
        return []
    value = cfg.network.worker_subnet_cidr
    workers = ipaddress.ip_network(value)
    allowed: list[str] = []
    if not workers.subnet_of(ipaddress.ip_network(cfg.network.cidr)):  # type: ignore[arg-type]
        allowed.append(f"inside sovereign:network.cidr {cfg.network.cidr}")
    if workers.overlaps(ipaddress.ip_network(cfg.network.subnet_cidr)):
        allowed.append(f"apart from sovereign:network.subnetCidr {cfg.network.subnet_cidr}")
    if not allowed:
        return []
    return [
        Problem("sovereign:network.workerSubnetCidr", repr(value), "a range " + ", ".join(allowed))
    ]


def _size_problems(cfg: StackConfig) -> list[Problem]:
    """Refuse at preview a pool whose worst-case user_data exceeds Hetzner's cap."""
    problems: list[Problem] = []
    for pool in sorted(cfg.workers):
        size = len(_worst_agent_user_data(cfg, pool).encode())
        if size > USER_DATA_CAP:
            problems.append(
                Problem(
                    f"sovereign:workers.{pool} (user_data)",
                    f"{size} bytes",
                    f"at most {USER_DATA_CAP} bytes (Hetzner's user_data cap); shorten the pool's "
                    "labels and taints, sovereign:access.sshPublicKeys or registryMirror.projects",
                )
            )
    return problems


def _worst_agent_user_data(cfg: StackConfig, pool: str) -> str:
    """A pool's agent boot with a full-length token and mirror password (sizes at preview)."""
    password = "x" * 128 if cfg.registry_mirror.username is not None else None
    return render_agent_user_data(cfg, pool, "x" * K3S_TOKEN_LENGTH, password)


def autoscaling_warnings(cfg: StackConfig) -> list[str]:
    """A cluster minor the autoscaler is not built for: warned, not refused, since a region
    steps through every minor one `up` at a time (and the autoscaler's chart moves after)."""
    facts = autoscaler.facts()
    pools = autoscaler.autoscaled_pools(cfg)
    if not pools or autoscaler.kubernetes_minor_matches(cfg):
        return []
    return [
        f"sovereign:controlPlane.k3sVersion {cfg.control_plane.k3s_version} while pools "
        f"{', '.join(pools)} are autoscaled: cluster-autoscaler {facts.app_version} (chart "
        f"{facts.chart.version}) is built for Kubernetes {facts.kubernetes_minor}, and upstream "
        "supports each release with its own minor only; finish the upgrade path "
        "(./sovereign upgrade-path) or vendor the matching chart (render/cluster_autoscaler.yaml)"
    ]


def autoscaling_notices(cfg: StackConfig) -> list[str]:
    """What every preview says about an autoscaled pool: who owns its servers."""
    return [
        f"pool {pool} is autoscaled: cluster-autoscaler (slot 06) creates and deletes its "
        f"{spec.server_type} servers, {bounds.min} to {bounds.max} "
        f"({autoscaler.node_group_flags(cfg)[index]}), booting the pool's agent cloud-init; "
        "this update creates none of them, and the autoscaler drains a server before it "
        "deletes it"
        for index, (pool, spec, bounds) in enumerate(
            (pool, cfg.workers[pool], cfg.workers[pool].autoscaling)
            for pool in autoscaler.autoscaled_pools(cfg)
        )
        if bounds is not None
    ]


def volume_locality_problems(cfg: StackConfig) -> list[Problem]:
    """Refuse a pool outside the region's location: a vCluster scheduled there would be away
    from its volume.

    A Hetzner volume lives in one location and attaches only to a server there
    (docs.hetzner.com/cloud/volumes/overview, checked 2026-12-04); the CSI driver creates each
    vCluster's `hcloud-volumes` claim in the region's location (render/hcloud.py), and the
    vCluster pods may run on any pool their tolerations admit. Every pool's servers are created
    in sovereign:region.location, so the key may only repeat it.
    """
    on_volumes = [
        name
        for name in active_vclusters(cfg)
        if cfg.vclusters.spec(name).storage_class == HCLOUD_VOLUMES
    ]
    region = cfg.region.location
    return [
        Problem(
            f"sovereign:workers.{pool}.location",
            repr(spec.location),
            f"a pool lives in the region's location, {region!r} (sovereign:region.location): "
            "a Hetzner volume attaches only to servers of its own location, so "
            + (
                f"the {', '.join(n.upper() for n in on_volumes)} vCluster(s) on hcloud-volumes "
                "could be scheduled away from their volumes there"
                if on_volumes
                else "a vCluster on hcloud-volumes could be scheduled away from its volume there"
            )
            + f". Remove the key (or set {region!r}); servers elsewhere are a region of their own "
            "(a stack with its own region.location)",
        )
        for pool, spec in sorted(cfg.workers.items())
        if spec.location is not None and spec.location != region
    ]


def removal_warnings(cfg: StackConfig, live: Mapping[str, str]) -> list[str]:
    """What this `up` deletes among the workers Hetzner has, said plainly: nothing drains them.

    `live` is server name -> pool. A pool shrinks from its highest-numbered server.
    """
    wanted = {
        worker_name(cfg, pool, index)
        for pool, spec in cfg.workers.items()
        for index in range(spec.static_count)
    }
    return [
        f"worker {server} (pool {pool or '?'}) is deleted by this update WITHOUT a drain: its "
        "pods stop where they run and local-path volumes on it are lost. Drain it first: "
        f"kubectl drain {server} --ignore-daemonsets --delete-emptydir-data"
        for server, pool in sorted(live.items())
        if server not in wanted
    ]
