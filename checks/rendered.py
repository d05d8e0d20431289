"""Checks on what Kubernetes will really receive: the charts rendered by Helm's own engine.

Each check returns `Problem`s naming the config key that controls the finding where there is
one, else the release and the rendered object's key path, with the value and the fix. They run
in `./sovereign plan` and the tests; the preflight inside `pulumi up` runs the mirror check
(`mirror_problems`) only when the mirror is on, because rendering costs 0.3-0.8 s per stack
(docs/review.md "Speed").
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from checks.kubernetes_schema import UnknownKindError, schema_errors
from checks.network_policy import KINDS as POLICY_KINDS
from checks.network_policy import UnsupportedPolicyError, load
from checks.tenants import quota_fit_problems
from config.errors import Problem
from config.models import StackConfig, VClusterName
from render.cache import cached
from render.cache import key as cache_key
from render.cert_manager import solver_images
from render.cloudinit import WORST_CASE_IPV4, k3s_server_config, node_kinds, reachable_api
from render.helm import RenderedObject, render_chart
from render.manifests import (
    image_uses,
    images,
    is_pinned,
    pod_image_uses,
    pod_templates,
    registry_of,
)
from render.naming import worker_node_labels
from render.pins import IMAGE_DIGESTS_FILE, UPSTREAM_DIR, digest_of, verified, verified_bytes
from render.pod_security import evaluate, refusal_message
from render.releases import SYSTEM_UPGRADE, ReleaseSpec, all_releases, manifest_objects
from render.system_upgrade import job_images
from render.vcluster import coredns_pods

# Labels the kubelet puts on every node by itself, beside the k3s `node-label` flags.
KUBELET_LABELS: Final[Mapping[str, frozenset[str]]] = {"kubernetes.io/os": frozenset({"linux"})}
# What cert-manager's release waits for: the webhook must answer before any Certificate can be
# created, and the chart's post-install hook Job `startupapicheck` proves it does (chart
# templates webhook-deployment.yaml and startupapicheck-job.yaml, cert-manager v1.21.1).
CERT_MANAGER_WAITS_FOR: Final = (
    ("Deployment", "cert-manager-webhook"),
    ("Job", "cert-manager-startupapicheck"),
)
CILIUM_AGENT: Final = ("DaemonSet", "cilium", "cilium-agent")


@dataclass(frozen=True, slots=True)
class RenderedRelease:
    spec: ReleaseSpec
    objects: tuple[RenderedObject, ...]


def render_releases(cfg: StackConfig) -> list[RenderedRelease]:
    """Every release of the stack rendered from its vendored chart (cached per chart+values),
    and every manifest set read from its vendored files; each file's sha256 verified first."""
    return [
        RenderedRelease(
            spec,
            manifest_objects(spec)
            if spec.source == "manifests"
            else render_chart(
                verified(spec.chart.package), spec.values, name=spec.name, namespace=spec.namespace
            ),
        )
        for spec in all_releases(cfg)
    ]


def _where(release: RenderedRelease, obj: RenderedObject, path: str = "") -> str:
    return f"release {release.spec.name} (slot {release.spec.slot:02d}) {obj.ref}" + (
        f" {path}" if path else ""
    )


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


# --- Pod Security -----------------------------------------------------------------------------


def pod_security_problems(cfg: StackConfig, rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """Every pod rendered into a vCluster namespace, judged at that namespace's enforce level."""
    levels: dict[str, VClusterName] = {
        release.spec.namespace: release.spec.vcluster
        for release in rendered
        if release.spec.vcluster is not None
    }
    problems: list[Problem] = []
    for release in rendered:
        # The pods Helm renders, and the CoreDNS pod the syncer later creates beside them.
        synced = coredns_pods(release.objects) if release.spec.vcluster is not None else []
        for pod in [*pod_templates(release.objects), *synced]:
            vcluster = levels.get(pod.owner.namespace)
            if vcluster is None:
                continue
            pss = cfg.vclusters.spec(vcluster).pod_security
            violations = evaluate(pod.spec, pss.enforce, pss.version)
            if violations:
                problems.append(
                    Problem(
                        f"sovereign:vclusters.{vcluster}.podSecurity.enforce",
                        repr(pss.enforce),
                        f"{_where(release, pod.owner)}: "
                        + refusal_message(pod.owner.namespace, pss.enforce, pss.version, violations)
                        + f"; use 'baseline', or harden sovereign:vclusters.{vcluster}.security"
                        + (
                            ""
                            if cfg.vclusters.spec(vcluster).rootless
                            else f" (sovereign:vclusters.{vcluster}.rootless is false: the pod "
                            "runs as root)"
                        ),
                    )
                )
    return problems


# --- Images -----------------------------------------------------------------------------------


def image_problems(cfg: StackConfig, rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """Every image pinned by tag or digest, and no digest a chart carries (Cilium's) other than
    the one render/image_digests.yaml records for the same tag."""
    problems: list[Problem] = []
    for release in rendered:
        for use in image_uses(release.objects):
            name, _, digest = use.image.partition("@")
            recorded = digest_of(name) if digest else None
            if recorded is not None and recorded != digest:
                problems.append(
                    Problem(
                        _where(release, use.owner, use.path),
                        repr(use.image),
                        f"the digest render/{IMAGE_DIGESTS_FILE.name} records for {name} "
                        f"({recorded}): the chart and the data disagree about what that tag is; "
                        "re-resolve it (python -m tools.resolve_pins image) and check the chart",
                    )
                )
            if not is_pinned(use.image):
                problems.append(
                    Problem(
                        _where(release, use.owner, use.path),
                        repr(use.image),
                        "an image pinned by tag or digest (`latest` or no tag moves under the "
                        "same name); pin it in the release's values",
                    )
                )
    return problems


def release_images(cfg: StackConfig, release: RenderedRelease) -> list[str]:
    """Every image a release pulls, sorted, once each: its pod templates' and the ones it names
    outside them (the CoreDNS pod a vCluster's syncer creates from the chart's manifest,
    cert-manager's ACME solver, the upgrade controller's cordon/drain and upgrade jobs)."""
    spec = release.spec
    found = set(images(release.objects))
    if spec.vcluster is not None:
        found.update(use.image for use in pod_image_uses(coredns_pods(release.objects)))
    if spec.chart.name == "cert-manager":
        found.update(solver_images(release.objects))
    if spec.name == SYSTEM_UPGRADE:
        found.update(job_images(cfg, [dict(obj.doc) for obj in release.objects]))
    return sorted(found)


def registries(rendered: Sequence[RenderedRelease]) -> list[str]:
    """Every registry the deployed charts pull from."""
    return sorted({registry_of(u.image) for r in rendered for u in image_uses(r.objects)})


def mirror_problems(cfg: StackConfig, rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """With the mirror on, every registry an image comes from must have a proxy project."""
    mirror = cfg.registry_mirror
    if not mirror.enabled:
        return []
    missing: dict[str, set[str]] = {}
    for release in rendered:
        for image in release_images(cfg, release):
            registry = registry_of(image)
            if registry not in mirror.projects and registry != mirror.host:
                missing.setdefault(registry, set()).add(f"{release.spec.name}: {image}")
    return [
        Problem(
            "sovereign:registryMirror.projects",
            repr(registry),
            f"no proxy project for {registry}, which {len(uses)} image(s) come from "
            f"({sorted(uses)[0]}{', ...' if len(uses) > 1 else ''}); add "
            f'"{registry}": "<project on {mirror.host}>", or they bypass the mirror',
        )
        for registry, uses in sorted(missing.items())
    ]


# --- Scheduling and wiring --------------------------------------------------------------------


def node_label_sets(cfg: StackConfig) -> list[dict[str, str]]:
    """The labels of each kind of node the region runs: every control-plane node, then one
    entry per worker pool that has servers (k3s `node-label` flags plus the kubelet's own)."""
    kubelet = {key: sorted(values)[0] for key, values in KUBELET_LABELS.items()}
    sets: list[dict[str, str]] = []
    for node in range(cfg.control_plane.count):
        labels = dict(kubelet)
        flags = k3s_server_config(cfg, node, WORST_CASE_IPV4, "x")["node-label"]
        for flag in cast("list[str]", flags):
            key, _, value = flag.partition("=")
            labels[key] = value
        sets.append(labels)
    for pool in sorted(cfg.workers):
        if cfg.workers[pool].most_servers:
            sets.append({**kubelet, **worker_node_labels(cfg, pool)})
    return sets


def node_labels(cfg: StackConfig) -> dict[str, frozenset[str]]:
    """Every label value some node carries, by key (for messages)."""
    labels: dict[str, set[str]] = {key: set(values) for key, values in KUBELET_LABELS.items()}
    for node in node_label_sets(cfg):
        for key, value in node.items():
            labels.setdefault(key, set()).add(value)
    return {key: frozenset(values) for key, values in labels.items()}


def scheduling_problems(cfg: StackConfig, rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """Every rendered nodeSelector is matched, as a whole, by some node (else: Pending forever).

    Judged per node: a selector whose keys each match a different node (one a server's role,
    the other a pool's label) matches no node at all.
    """
    nodes = node_label_sets(cfg)
    labels = node_labels(cfg)
    problems: list[Problem] = []
    for release in rendered:
        for pod in pod_templates(release.objects):
            selector = {str(k): str(v) for k, v in _map(pod.spec.get("nodeSelector")).items()}
            if not selector or any(selector.items() <= node.items() for node in nodes):
                continue
            known = ", ".join(f"{k}={v}" for k in sorted(labels) for v in sorted(labels[k]))
            shown = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            problems.append(
                Problem(
                    _where(release, pod.owner, f"{pod.path}.nodeSelector"),
                    shown,
                    f"labels one node carries together ({known}); no node matches, every pod "
                    "of it stays Pending",
                )
            )
    return problems


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(_map(e).get("name")): str(_map(e).get("value"))
        for e in _list(container.get("env"))
        if "value" in _map(e)
    }


def cilium_wiring_problems(cfg: StackConfig, rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """The Cilium agent finds an API server at its address on every kind of node it runs on.

    Read from the rendered DaemonSet's env (what the pods really get), judged against where
    k3s serves the API on servers and on agents (render.cloudinit.reachable_api).
    """
    kinds = node_kinds(cfg)
    problems: list[Problem] = []
    for release in rendered:
        if release.spec.chart.name != "cilium":
            continue
        kind, name, agent = CILIUM_AGENT
        found = False
        for pod in pod_templates(release.objects):
            for index, container in enumerate(_list(pod.spec.get("containers"))):
                env = _env(_map(container))
                is_agent = (pod.owner.kind, pod.owner.name, _map(container).get("name")) == (
                    kind,
                    name,
                    agent,
                )
                found = found or is_agent
                if not (is_agent or "KUBERNETES_SERVICE_HOST" in env):
                    continue
                host = env.get("KUBERNETES_SERVICE_HOST")
                port = env.get("KUBERNETES_SERVICE_PORT")
                for node_kind in kinds:
                    reachable = reachable_api(cfg, node_kind)
                    if (str(host), int(port) if port and port.isdigit() else -1) in reachable:
                        continue
                    options = ", ".join(f"{h}:{p}" for h, p in sorted(reachable))
                    problems.append(
                        Problem(
                            _where(release, pod.owner, f"{pod.path}.containers[{index}].env"),
                            f"KUBERNETES_SERVICE_HOST={host!r} KUBERNETES_SERVICE_PORT={port!r}",
                            f"an API address a k3s {node_kind} serves ({options}); on a "
                            f"{node_kind} nothing answers there and Cilium never starts",
                        )
                    )
        if not found:
            problems.append(
                Problem(
                    f"release {release.spec.name} (slot {release.spec.slot:02d})",
                    "(no agent)",
                    f"the chart renders {kind}/{name} with container {agent}",
                )
            )
    return problems


def cert_manager_wait_problems(rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """The objects the cert-manager release's wait depends on are rendered."""
    problems: list[Problem] = []
    for release in rendered:
        if release.spec.chart.name != "cert-manager":
            continue
        present = {(obj.kind, obj.name) for obj in release.objects}
        for kind, name in CERT_MANAGER_WAITS_FOR:
            if (kind, name) not in present:
                problems.append(
                    Problem(
                        f"release {release.spec.name} (slot {release.spec.slot:02d})",
                        f"{kind}/{name} missing",
                        "rendered, so the release's wait covers a webhook that answers "
                        "before the vCluster slots start",
                    )
                )
    return problems


# --- Schemas ----------------------------------------------------------------------------------

CCNP: Final = ("cilium.io/v2", "CiliumClusterwideNetworkPolicy")
# The Rule fields of Cilium's policy API that a clusterwide policy may carry (cilium/cilium
# pkg/policy/api/rule.go and the generated CRD ciliumclusterwidenetworkpolicies.yaml, v1.18;
# read 2026-11-27, not vendored: no copy from the steering repository exists).
CCNP_SPEC_FIELDS: Final = frozenset(
    {
        "description",
        "egress",
        "egressDeny",
        "enableDefaultDeny",
        "endpointSelector",
        "ingress",
        "ingressDeny",
        "labels",
        "log",
        "nodeSelector",
    }
)
_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)


def ccnp_errors(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Structural check of a CiliumClusterwideNetworkPolicy on the fields this program uses."""
    errors: list[tuple[str, str]] = []
    name = str(_map(obj.get("metadata")).get("name", ""))
    if not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        errors.append(("metadata.name", f"{name!r} is not a DNS subdomain"))
    spec = _map(obj.get("spec"))
    for key in sorted(set(spec) - CCNP_SPEC_FIELDS):
        errors.append((f"spec.{key}", "unknown field of a Cilium policy rule"))
    if ("endpointSelector" in spec) == ("nodeSelector" in spec):
        errors.append(("spec", "exactly one of endpointSelector and nodeSelector"))
    if not any(k in spec for k in ("ingress", "ingressDeny", "egress", "egressDeny")):
        errors.append(("spec", "at least one of ingress, ingressDeny, egress, egressDeny"))
    for key, value in _map(spec.get("enableDefaultDeny")).items():
        if key not in ("egress", "ingress") or not isinstance(value, bool):
            errors.append((f"spec.enableDefaultDeny.{key}", "egress/ingress: a boolean"))
    for index, rule in enumerate(_list(spec.get("egressDeny"))):
        for j, cidr in enumerate(_list(_map(rule).get("toCIDR"))):
            try:
                ipaddress.ip_network(str(cidr), strict=True)
            except ValueError:
                errors.append((f"spec.egressDeny[{index}].toCIDR[{j}]", f"{cidr!r}: a CIDR"))
    return errors


SUC_PLAN: Final = ("upgrade.cattle.io/v1", "Plan")
# PlanSpec of rancher/system-upgrade-controller v0.20.1 (pkg/crds/yaml/generated/
# upgrade.cattle.io_plans.yaml; required: upgrade, and upgrade.image), the CRD `up` applies:
# vendored as render/upstream/system-upgrade-controller-v0.20.1/upgrade.cattle.io_plans.yaml
# (tests/test_render_checks.py holds these sets to it).
PLAN_SPEC_FIELDS: Final = frozenset(
    {
        "channel",
        "concurrency",
        "cordon",
        "drain",
        "exclusive",
        "imagePullSecrets",
        "jobActiveDeadlineSecs",
        "nodeSelector",
        "postCompleteDelay",
        "postCompleteLabels",
        "prepare",
        "priorityClassName",
        "secrets",
        "serviceAccountName",
        "tolerations",
        "upgrade",
        "version",
        "window",
    }
)
PLAN_UPGRADE_FIELDS: Final = frozenset(
    {"args", "command", "envFrom", "envs", "image", "securityContext", "volumes"}
)
GATEWAY: Final = ("gateway.networking.k8s.io/v1", "Gateway")
# Gateway spec and listener fields of the Gateway API releases the Cilium lines pin (v1.3.0 for
# 1.18, v1.4.0 for 1.19: config/data/support_matrix.yaml), identical in both (config/crd/
# standard/gateway.networking.k8s.io_gateways.yaml, vendored in render/upstream/: spec requires
# gatewayClassName and listeners; a listener requires name, port 1-65535 and protocol; tls.mode
# is Terminate or Passthrough; tests/test_render_checks.py holds these sets to each release).
GATEWAY_SPEC_FIELDS: Final = frozenset(
    {"addresses", "gatewayClassName", "infrastructure", "listeners"}
)
LISTENER_FIELDS: Final = frozenset({"allowedRoutes", "hostname", "name", "port", "protocol", "tls"})


def _whole(value: object, least: int, most: int | None = None) -> bool:
    """A whole number in range; declared objects come back from the engine with every number as
    a float (protobuf Struct), so 3.0 counts as 3."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return False
    return least <= value and (most is None or value <= most)


def _unknown(spec: Mapping[str, Any], known: frozenset[str], where: str) -> list[tuple[str, str]]:
    return [(f"{where}.{key}", "unknown field") for key in sorted(set(spec) - known)]


def plan_errors(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Structural check of a system-upgrade-controller Plan on its CRD's fields."""
    spec = _map(obj.get("spec"))
    errors = _unknown(spec, PLAN_SPEC_FIELDS, "spec")
    upgrade = _map(spec.get("upgrade"))
    if not upgrade.get("image"):
        errors.append(("spec.upgrade.image", "required"))
    errors += _unknown(upgrade, PLAN_UPGRADE_FIELDS, "spec.upgrade")
    if not spec.get("version") and not spec.get("channel"):
        errors.append(("spec", "one of version and channel"))
    concurrency = spec.get("concurrency", 1)
    if not _whole(concurrency, 1):
        errors.append(("spec.concurrency", "a whole number of 1 or more"))
    return errors


def gateway_errors(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Structural check of a Gateway API v1 Gateway on its CRD's fields."""
    spec = _map(obj.get("spec"))
    errors = _unknown(spec, GATEWAY_SPEC_FIELDS, "spec")
    if not spec.get("gatewayClassName"):
        errors.append(("spec.gatewayClassName", "required"))
    listeners = _list(spec.get("listeners"))
    if not listeners:
        errors.append(("spec.listeners", "required, at least one"))
    for index, item in enumerate(listeners):
        listener = _map(item)
        where = f"spec.listeners[{index}]"
        errors += _unknown(listener, LISTENER_FIELDS, where)
        for field in ("name", "port", "protocol"):
            if field not in listener:
                errors.append((f"{where}.{field}", "required"))
        port = listener.get("port")
        if not _whole(port, 1, 65535):
            errors.append((f"{where}.port", f"{port!r}: 1 to 65535"))
        mode = _map(listener.get("tls")).get("mode")
        if mode is not None and mode not in ("Terminate", "Passthrough"):
            errors.append((f"{where}.tls.mode", f"{mode!r}: Terminate or Passthrough"))
    return errors


# Custom resources the program declares, each also checked on the fields its CRD defines: a
# CRD's schema does not refuse unknown fields (the API server prunes them silently), and some of
# these rules (one of version and channel) are the controller's, not the schema's.
STRUCTURAL_CHECKS: Final[
    Mapping[tuple[str, str], Callable[[Mapping[str, Any]], list[tuple[str, str]]]]
] = {
    CCNP: ccnp_errors,
    # A namespaced policy's spec is the same rule type as the clusterwide one's.
    ("cilium.io/v2", "CiliumNetworkPolicy"): ccnp_errors,
    SUC_PLAN: plan_errors,
    GATEWAY: gateway_errors,
}


# Cilium registers its policy CRDs from the operator (the chart ships none) and the cilium/cilium
# repository could not be vendored: the JSON schema kubeconform users validate
# CiliumClusterwideNetworkPolicy with (datreeio CRDs-catalog, converted from Cilium 1.18.2) stands
# in for it, checked beside the structural rules above (render/upstream/SOURCES.md).
POLICY_SCHEMAS: Final[Mapping[tuple[str, str], Path]] = {
    CCNP: UPSTREAM_DIR / "datreeio-crds-catalog/cilium.io/ciliumclusterwidenetworkpolicy_v2.json",
}


@functools.cache
def _policy_schema(path: Path) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", json.loads(verified_bytes(path)[0]))


def crd_schemas(rendered: Sequence[RenderedRelease]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """openAPIV3Schema of every CRD the charts and manifest sets install, by (apiVersion, kind),
    and the Cilium policy schemas."""
    found: dict[tuple[str, str], Mapping[str, Any]] = {
        key: _policy_schema(path) for key, path in POLICY_SCHEMAS.items()
    }
    for release in rendered:
        for obj in release.objects:
            if obj.kind != "CustomResourceDefinition":
                continue
            spec = _map(obj.doc.get("spec"))
            kind = str(_map(spec.get("names")).get("kind"))
            for version in _list(spec.get("versions")):
                schema = _map(_map(_map(version).get("schema")).get("openAPIV3Schema"))
                found[(f"{spec.get('group')}/{_map(version).get('name')}", kind)] = schema
    return found


def _crd_schema_errors(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[list[str]]:
    """Errors of `obj` against a CRD's schema, cached on disk by both (building a validator for
    the Plan CRD's 70 KB schema took a fifth of a warm plan)."""

    def compute() -> list[list[str]]:
        import jsonschema

        validator = jsonschema.Draft4Validator(schema)
        found: list[jsonschema.ValidationError] = list(
            validator.iter_errors(dict(obj))  # pyright: ignore[reportUnknownMemberType]
        )
        return [
            [".".join(map(str, e.path)) or "(object)", e.message]
            for e in sorted(found, key=lambda e: list(map(str, e.path)))
        ]

    return cached("crd-schema", cache_key("crd-schema", 1, obj, schema), compute)


def object_errors(
    obj: Mapping[str, Any], k8s_version: str, crds: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """Strict built-in schema; for a custom resource its CRD's schema (from the charts and
    manifest sets that install it) and the structural check where one exists, both."""
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    try:
        return schema_errors(obj, k8s_version)
    except UnknownKindError:
        pass
    schema = crds.get(key)
    structural = STRUCTURAL_CHECKS.get(key)
    if schema is None and structural is None:
        return [("apiVersion", f"{key[0]} {key[1]}: no schema to validate it against")]
    errors: list[tuple[str, str]] = []
    if schema is not None:
        errors += [(str(p), str(m)) for p, m in _crd_schema_errors(obj, schema)]
    if structural is not None:
        errors += structural(obj)
    return errors


def schema_problems(
    cfg: StackConfig,
    rendered: Sequence[RenderedRelease],
    declared: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> list[Problem]:
    """Every rendered object and every object the program declares, against its schema."""
    version = cfg.control_plane.k3s_version
    crds = crd_schemas(rendered)
    problems: list[Problem] = []
    labelled: list[tuple[str, Mapping[str, Any]]] = [
        (_where(release, obj), obj.doc) for release in rendered for obj in release.objects
    ]
    for where, doc in [*labelled, *declared]:
        for path, message in object_errors(doc, version, crds):
            problems.append(
                Problem(
                    f"{where} {path}",
                    "invalid",
                    f"{message} (Kubernetes {version} schema, strict)",
                )
            )
    return problems


def rendered_problems(
    cfg: StackConfig,
    rendered: Sequence[RenderedRelease] | None = None,
    declared: Iterable[tuple[str, Mapping[str, Any]]] = (),
) -> list[Problem]:
    """Every check on the rendered releases (and the declared objects, when given)."""
    rendered = render_releases(cfg) if rendered is None else rendered
    declared = list(declared)
    return [
        *pod_security_problems(cfg, rendered),
        *image_problems(cfg, rendered),
        *mirror_problems(cfg, rendered),
        *scheduling_problems(cfg, rendered),
        *cilium_wiring_problems(cfg, rendered),
        *cert_manager_wait_problems(rendered),
        *schema_problems(cfg, rendered, declared),
        *quota_fit_problems(cfg, [(r.spec.vcluster, r.objects) for r in rendered]),
        *policy_problems(declared),
        *request_problems(rendered),
    ]


def request_problems(rendered: Sequence[RenderedRelease]) -> list[Problem]:
    """Every container of every rendered pod asks for CPU and memory: the scheduler places pods
    by requests and the quotas count them, so a pod without them overstates every node's room."""
    problems: list[Problem] = []
    for release in rendered:
        for pod in pod_templates(release.objects):
            for key in ("initContainers", "containers"):
                for index, container in enumerate(_list(pod.spec.get(key))):
                    asked = _map(_map(_map(container).get("resources")).get("requests"))
                    missing = [r for r in ("cpu", "memory") if r not in asked]
                    if missing:
                        problems.append(
                            Problem(
                                _where(release, pod.owner, f"{pod.path}.{key}[{index}]"),
                                f"requests {dict(asked)}",
                                f"CPU and memory requests ({' and '.join(missing)} missing); "
                                "set them in the release's values (render/system_pods.py)",
                            )
                        )
    return problems


def policy_problems(declared: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Problem]:
    """Every declared network policy must be one the allow/deny evaluator can read exactly (a
    selector with labels outside matchLabels, a named port): the tables prove nothing else."""
    problems: list[Problem] = []
    for where, doc in declared:
        if doc.get("kind") not in POLICY_KINDS:
            continue
        try:
            load([doc])
        except UnsupportedPolicyError as err:
            problems.append(
                Problem(
                    where,
                    "unsupported",
                    f"{err}: the allow/deny evaluator (checks/network_policy.py) cannot read "
                    "it exactly, so no table proves what it allows",
                )
            )
    return problems
