"""Tenant fences across config and the live region: a vCluster keeps the mode it was created in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Final, cast

from config.errors import Problem
from config.models import ContainerLimits, StackConfig, VClusterName
from config.quantity import parse
from render.helm import RenderedObject
from render.manifests import pod_templates
from render.slots import active_vclusters
from render.tenants import QUOTA_KEYS, quota_hard
from render.vcluster import Mode, coredns_objects, mode, mode_label_key, storage_label_key

ROOTLESS_DOCS: Final = "loft-sh/vcluster-docs deploy/security/rootless-mode (0.20)"


def live_mode(labels: Mapping[str, str], key: str) -> Mode:
    """What a live server records for one vCluster; no label: created before rootless (root)."""
    value = labels.get(key)
    return value if value in ("rootless", "root", "none") else "root"  # type: ignore[return-value]


def vcluster_mode_problems(
    cfg: StackConfig, live_labels: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """Refuse switching a live vCluster between root and rootless (server name -> its labels).

    vCluster has no migration between the two: the data a root pod wrote is not the non-root
    UID's, and the chart's pod changes under the running control plane.
    """
    problems: list[Problem] = []
    for vcluster in active_vclusters(cfg):
        wanted = mode(cfg.vclusters.spec(vcluster))
        key = mode_label_key(vcluster)
        for server, labels in sorted(live_labels.items()):
            deployed = live_mode(labels, key)
            if deployed in ("none", wanted):
                continue
            recorded = f"records {key}={labels[key]}" if key in labels else f"has no {key} label"
            problems.append(
                Problem(
                    f"sovereign:vclusters.{vcluster}.rootless",
                    "true" if wanted == "rootless" else "false",
                    f"the {vcluster.upper()} vCluster of this live region runs as {deployed} "
                    f"(server {server} {recorded}; a region created before rootless became the "
                    f"default has none and runs as root), and vCluster cannot move a live "
                    f"vCluster between root and non-root ({ROOTLESS_DOCS}). Set "
                    f"sovereign:vclusters.{vcluster}.rootless: "
                    f"{'false' if deployed == 'root' else 'true'}"
                    + (" with podSecurity.enforce 'baseline'" if deployed == "root" else "")
                    + ", or recreate the vCluster (docs/security.md, 'Rootless vClusters')",
                )
            )
            break
    return problems


def vcluster_storage_problems(
    cfg: StackConfig, live_labels: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """Refuse moving a live vCluster's data volume to another StorageClass (server -> labels).

    The class is part of the StatefulSet's volumeClaimTemplates, which Kubernetes does not let
    an update change, and no data would move with it: the release would fail at `up`.
    """
    problems: list[Problem] = []
    for vcluster in active_vclusters(cfg):
        wanted = cfg.vclusters.spec(vcluster).storage_class
        key = storage_label_key(vcluster)
        for server, labels in sorted(live_labels.items()):
            if live_mode(labels, mode_label_key(vcluster)) == "none":
                continue  # not deployed there yet: a new vCluster takes any class
            # No label: deployed before hcloud-volumes existed, when every vCluster used
            # local-path.
            deployed = labels.get(key, "local-path")
            if deployed in ("none", wanted):
                continue
            problems.append(
                Problem(
                    f"sovereign:vclusters.{vcluster}.storageClass",
                    repr(wanted),
                    f"the {vcluster.upper()} vCluster of this live region keeps its data on "
                    f"{deployed} (server {server}"
                    + (f" records {key}={deployed}" if key in labels else f" has no {key} label")
                    + "), and a StatefulSet's volume class cannot change (Kubernetes refuses "
                    "the update; no data would move). Set "
                    f"sovereign:vclusters.{vcluster}.storageClass: {deployed}, or recreate the "
                    "vCluster from a backup of its data (docs/day2.md, 'Durable vCluster data')",
                )
            )
            break
    return problems


# --- quotas that fit ----------------------------------------------------------------------

COMPUTE: Final = ("cpu", "memory")
# The camelCase key users type, by ResourceQuota key.
QUOTA_FIELDS: Final = {
    "".join(w if i == 0 else w.title() for i, w in enumerate(f.split("_"))): k
    for f, k in QUOTA_KEYS.items()
}


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


def admitted(
    container: Mapping[str, Any], limits: ContainerLimits
) -> tuple[dict[str, Fraction], dict[str, Fraction]]:
    """(requests, limits) of a container once the API server and the LimitRanger admitted it.

    The API server sets an omitted request to the container's limit; the LimitRanger fills what
    is still missing from the namespace's defaults.
    """
    resources = _map(container.get("resources"))
    asked_requests, asked_limits = _map(resources.get("requests")), _map(resources.get("limits"))
    defaults = {"cpu": limits.default_cpu, "memory": limits.default_memory}
    default_requests = {"cpu": limits.default_request_cpu, "memory": limits.default_request_memory}
    req: dict[str, Fraction] = {}
    lim: dict[str, Fraction] = {}
    for resource in COMPUTE:
        lim[resource] = parse(asked_limits.get(resource, defaults[resource]))
        if resource in asked_requests:
            req[resource] = parse(asked_requests[resource])
        elif resource in asked_limits:
            req[resource] = lim[resource]
        else:
            req[resource] = parse(default_requests[resource])
    return req, lim


def pod_usage(
    pod: Mapping[str, Any], limits: ContainerLimits
) -> tuple[dict[str, Fraction], list[str]]:
    """What one pod counts against the quota (`requests.cpu`, ...), and the containers whose
    limit exceeds the LimitRange's max (which the LimitRanger refuses).

    A pod's usage is the larger of its containers together and its largest init container,
    because init containers run one at a time before the others (the quota's own rule).
    """
    usage: dict[str, Fraction] = {}
    too_big: list[str] = []
    most = {"cpu": parse(limits.max_cpu), "memory": parse(limits.max_memory)}
    admitted_by_list = {
        key: [(str(_map(c).get("name")), admitted(_map(c), limits)) for c in _list(pod.get(key))]
        for key in ("initContainers", "containers")
    }
    for kind, index in (("requests", 0), ("limits", 1)):
        for resource in COMPUTE:
            together = sum(
                (amounts[index][resource] for _, amounts in admitted_by_list["containers"]),
                Fraction(0),
            )
            largest_init = max(
                (amounts[index][resource] for _, amounts in admitted_by_list["initContainers"]),
                default=Fraction(0),
            )
            usage[f"{kind}.{resource}"] = max(together, largest_init)
    for entries in admitted_by_list.values():
        for name, (_, lim) in entries:
            over = [r for r in COMPUTE if lim[r] > most[r]]
            if over:
                too_big.append(f"{name} ({', '.join(over)})")
    return usage, too_big


def _replicas(doc: Mapping[str, Any]) -> int:
    spec = _map(doc.get("spec"))
    replicas = int(spec.get("replicas", 1))
    if doc.get("kind") != "Deployment":
        # A StatefulSet replaces its pod in place: never one more.
        return replicas
    # A rolling Deployment may run maxSurge (default 25%, rounded up) pods more.
    surge = _map(_map(spec.get("strategy")).get("rollingUpdate")).get("maxSurge", "25%")
    extra = (
        math.ceil(replicas * int(surge.rstrip("%")) / 100) if isinstance(surge, str) else int(surge)
    )
    return replicas + extra


def vcluster_usage(
    objects: Sequence[RenderedObject], limits: ContainerLimits
) -> tuple[dict[str, Fraction], list[str]]:
    """What the vCluster's own objects take from its namespace's quota: the rendered workloads,
    services and claims, and the CoreDNS Deployment and Service the syncer creates there."""
    workloads: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = [
        (pod.owner.doc, pod.spec) for pod in pod_templates(objects)
    ]
    synced = [doc for _, doc in coredns_objects(objects)]
    for doc in synced:
        if doc.get("kind") == "Deployment":
            template = _map(_map(doc.get("spec")).get("template"))
            workloads.append((doc, _map(template.get("spec"))))
    total: dict[str, Fraction] = {
        key: Fraction(0)
        for key in (
            *(f"{kind}.{r}" for kind in ("requests", "limits") for r in COMPUTE),
            "requests.storage",
            "pods",
            "persistentvolumeclaims",
            "services",
            "services.nodeports",
            "services.loadbalancers",
        )
    }
    too_big: list[str] = []
    for owner, pod in workloads:
        count = _replicas(owner)
        usage, over = pod_usage(pod, limits)
        too_big += over
        for key, amount in usage.items():
            total[key] += amount * count
        total["pods"] += count
        for claim in _list(_map(owner.get("spec")).get("volumeClaimTemplates")):
            requests = _map(_map(_map(_map(claim).get("spec")).get("resources")).get("requests"))
            total["requests.storage"] += parse(str(requests.get("storage", "0"))) * count
            total["persistentvolumeclaims"] += count
    services = [obj.doc for obj in objects if obj.kind == "Service"]
    services += [doc for doc in synced if doc.get("kind") == "Service"]
    for service in services:
        kind = _map(service.get("spec")).get("type", "ClusterIP")
        total["services"] += 1
        total["services.nodeports"] += kind in ("NodePort", "LoadBalancer")
        total["services.loadbalancers"] += kind == "LoadBalancer"
    return total, too_big


def _shown(key: str, amount: Fraction) -> str:
    if key.endswith(".cpu"):
        return f"{float(amount):g} CPU"
    if key.endswith((".memory", ".storage")):
        return f"{float(amount / 2**30):.2f}Gi"
    return str(amount)


def quota_fit_problems(
    cfg: StackConfig, rendered: Iterable[tuple[VClusterName | None, Sequence[RenderedObject]]]
) -> list[Problem]:
    """Each vCluster's own pods must fit its namespace's quota and LimitRange, else it never
    starts. `rendered`: (vCluster or None, the release's rendered objects) per release."""
    problems: list[Problem] = []
    for vcluster, objects in rendered:
        if vcluster is None:
            continue
        spec = cfg.vclusters.spec(vcluster)
        used, too_big = vcluster_usage(objects, spec.limits)
        if too_big:
            problems.append(
                Problem(
                    f"sovereign:vclusters.{vcluster}.limits",
                    f"maxCpu {spec.limits.max_cpu}, maxMemory {spec.limits.max_memory}",
                    f"at least the limits of the vCluster's own containers: {', '.join(too_big)} "
                    "ask for more, so the LimitRanger would refuse its pods",
                )
            )
        for key, hard in quota_hard(vcluster, spec.quota).items():
            if used[key] > parse(hard):
                field = next(f for f, k in QUOTA_FIELDS.items() if k == key)
                problems.append(
                    Problem(
                        f"sovereign:vclusters.{vcluster}.quota.{field}",
                        repr(hard),
                        f"at least {_shown(key, used[key])}: what the {vcluster.upper()} "
                        f"vCluster's own pods take ({key}), or the quota refuses them and the "
                        "vCluster never starts",
                    )
                )
    return problems


def quota_preflight_problems(cfg: StackConfig) -> list[Problem]:
    """At preview, a vCluster whose quota or limits the stack sets is rendered and judged (the
    defaults are proven by the tests; rendering costs 0.3-0.8 s, as for the mirror check)."""
    changed = [
        vcluster
        for vcluster in active_vclusters(cfg)
        if cfg.vclusters.spec(vcluster).quota.model_fields_set
        or cfg.vclusters.spec(vcluster).limits.model_fields_set
    ]
    if not changed:
        return []
    from render.helm import render_chart
    from render.releases import releases

    rendered: list[tuple[VClusterName | None, Sequence[RenderedObject]]] = [
        (
            spec.vcluster,
            render_chart(spec.chart.package, spec.values, name=spec.name, namespace=spec.namespace),
        )
        for spec in releases(cfg)
        if spec.vcluster in changed
    ]
    return quota_fit_problems(cfg, rendered)
