"""The sovereign guardrails: pure checks, and the pulumi_policy policies that run them.

Every check takes what the Pulumi engine hands a policy pack (the resource type token, the
properties as the engine sees them: camelCase keys, nested mappings and sequences, numbers as
floats; and, for resource checks, the resource options) and returns its violations as plain
sentences that name the resource, the value and the fix. The checks hold for any program that
declares these resource types, not only this one. `policies()` wraps them for `PolicyPack`.

Values the engine does not know yet (during `pulumi preview`, an input computed from another
resource's output) raise pulumi_policy's `UnknownValueError` when a check reads them; the engine
then reports that the policy could not run on that resource in this preview (advisory). During
`pulumi up` every input is known and the check runs in full.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard, cast

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

# The program's Pod Security vocabulary and evaluator (stdlib only, so the pack's venv has it).
from config.grammar import world_families
from config.pss import LABEL_PREFIX, LEVELS, VERSION_PATTERN
from config.pss import Level as PodSecurityLevel
from render.pod_security import evaluate, refusal_message, vcluster_pod_spec

PACK_NAME: Final = "sovereign-guardrails"

FIREWALL: Final = "hcloud:index/firewall:Firewall"
SERVER: Final = "hcloud:index/server:Server"
NAMESPACE: Final = "kubernetes:core/v1:Namespace"
SERVICE: Final = "kubernetes:core/v1:Service"
HELM_RELEASE: Final = "kubernetes:helm.sh/v3:Release"
HELM_CHART_V4: Final = "kubernetes:helm.sh/v4:Chart"
LOAD_BALANCER: Final = "hcloud:index/loadBalancer:LoadBalancer"
LB_SERVICE: Final = "hcloud:index/loadBalancerService:LoadBalancerService"
LB_NETWORK: Final = "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork"
# Workload kinds whose pod template names container images directly.
WORKLOADS: Final = frozenset(
    f"kubernetes:{kind}"
    for kind in (
        "core/v1:Pod",
        "apps/v1:Deployment",
        "apps/v1:DaemonSet",
        "apps/v1:StatefulSet",
        "apps/v1:ReplicaSet",
        "batch/v1:Job",
        "batch/v1:CronJob",
    )
)

# Objects applied from manifests (system-upgrade-controller's), and the Plans whose jobs the
# controller runs from `spec.upgrade.image` / `spec.prepare.image`.
CONFIG_GROUP: Final = "kubernetes:yaml/v2:ConfigGroup"
SUC_PLAN: Final = "kubernetes:upgrade.cattle.io/v1:Plan"
# An environment-style key naming an image (system-upgrade-controller's ConfigMap names its
# cordon/drain jobs' image as SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE).
ENV_IMAGE_SUFFIX: Final = "_IMAGE"

NODE_ROLE_LABEL: Final = "catalyst.openova.io/role"
VCLUSTER_ROLE_LABEL: Final = "catalyst.openova.io/vcluster-role"
PSA_ENFORCE: Final = f"{LABEL_PREFIX}enforce"
PSA_ENFORCE_VERSION: Final = f"{LABEL_PREFIX}enforce-version"

POD_SECURITY_LEVELS: Final = LEVELS
# What PodSecurity accepts in an `-version` label: `latest` or a Kubernetes minor, `v1.31`.
POD_SECURITY_VERSION: Final = VERSION_PATTERN

SSH_PORT: Final = 22
API_PORT: Final = 6443
# Set by the program from `sovereign:api.public` on the API load balancer and the firewall: the
# one way a resource says that a world-open Kubernetes API is meant.
API_PUBLIC_LABEL: Final = "openova.io/api-public"
# Stack config as the engine hands it to a policy pack process (JSON, key -> string value;
# pulumi/pulumi sdk/go/common/resource/plugin/analyzer_plugin.go, constructEnv).
CONFIG_ENV: Final = "PULUMI_CONFIG"
REPLACEMENT_KEY: Final = "sovereign:replacement"
# What marks secret material in a boot script: private keys, k3s join tokens, S3 secret keys.
SECRET_MATERIAL: Final = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|^\s*[\"']?(?:token|agent-token|etcd-s3-secret-key)[\"']?\s*[:=]\s*\S"
    r"|\b(?:K10|K20)[0-9a-f]{6,}::",
    re.M,
)
DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$|^sha256:[0-9a-f]{64}$")
# Ports of the control plane that must never be a NodePort: the API server (k3s serves it on
# 6443 and runs the real kube-apiserver behind it on 6444) and embedded etcd.
CONTROL_PLANE_PORTS: Final[Mapping[int, str]] = {
    6443: "the Kubernetes API server",
    6444: "the kube-apiserver behind the k3s supervisor",
    2379: "the etcd client API",
    2380: "the etcd peer API",
}
CONTROL_PLANE_WORDS: Final = ("apiserver", "etcd", "clustermesh")

# MAJOR.MINOR.PATCH with optional pre-release and build (semver 2.0), optionally with a leading v.
_IDENT: Final = r"[0-9A-Za-z-]+"
EXACT_VERSION: Final = re.compile(
    rf"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    rf"(-{_IDENT}(\.{_IDENT})*)?(\+{_IDENT}(\.{_IDENT})*)?"
)
_RANGE_MARKS: Final = re.compile(r"[\^~<>=*|,\s]|(^|\.)[xX](\.|$)")

ResourceCheck = Callable[[str, Mapping[str, Any], PolicyResourceOptions], list[str]]
# (release values, namespace, enforce level, enforce version) -> PodSecurity's refusal, or None.
PodSecurityJudge = Callable[[Mapping[str, Any], str, PodSecurityLevel, str], str | None]


# --- reading engine properties -----------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    """`value` as a mapping, empty when absent; the engine passes Mapping proxies, not dicts."""
    if isinstance(value, Mapping):
        return cast("Mapping[str, Any]", value)
    return {}


def _items(value: object) -> list[Any]:
    """`value` as a list, empty when absent; the engine passes Sequence proxies, not lists."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(cast("Sequence[Any]", value))
    return []


def _at(props: Mapping[str, Any], *path: str) -> Any:
    """The value at a path of keys, or None where the path stops."""
    value: Any = props
    for key in path:
        value = _mapping(value).get(key)
    return value


def _label(props: Mapping[str, Any], *path: str) -> str:
    """A name for messages; a value not known yet (preview) must not stop the check itself."""
    try:
        value = _at(props, *path)
    except UnknownValueError:
        return "(not known yet)"
    return "(unnamed)" if value is None or value == "" else str(value)


def _plain(value: Any) -> Any:
    """Engine proxies as plain dicts and lists, for code that expects JSON-shaped values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in cast("Mapping[Any, Any]", value).items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in cast("Sequence[Any]", value)]
    return value


def _as_int(value: object) -> int | None:
    """A port number; the engine's numbers are floats (6443.0), names are strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _go_truthy(value: object) -> bool:
    """Whether a Helm template's `if` takes this value as true (Go template truthiness)."""
    if value is None:
        return False
    if isinstance(value, bool | int | float | str):
        return bool(value)
    return bool(_items(value)) or bool(_mapping(value))


def chart_name(chart: object) -> str:
    """The chart's own name from any way of naming it: `vcluster`, `loft/vcluster`,
    `oci://ghcr.io/loft-sh/vcluster`, `https://…/vcluster-0.20.0.tgz`, `./charts/vcluster`."""
    if not isinstance(chart, str):
        return ""
    base = chart.strip().rstrip("/").rsplit("/", 1)[-1].lower()
    base = base.split("@", 1)[0].split(":", 1)[0]
    if base.endswith(".tgz"):
        base = re.sub(r"-v?[0-9]+\.[0-9]+\.[0-9]+.*$", "", base.removesuffix(".tgz"))
    return base


# --- no-world-ssh ------------------------------------------------------------------------------


def _port_range(port: object) -> tuple[int, int] | None:
    """A Hetzner rule's port as (low, high): `22`, `20-30` or `any`; None when not a port."""
    text = str(port).strip().lower()
    if text == "any":
        return (1, 65535)
    match = re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", text)
    if match is None:
        return None
    low, high = int(match[1]), int(match[2] or match[1])
    return (min(low, high), max(low, high))


def world_cidrs(sources: Sequence[object]) -> list[str]:
    """Which whole address families `sources` open: '0.0.0.0/0' and/or '::/0'.

    Also catches the same thing spelled differently (`0.0.0.0/0` written as `1.2.3.4/0`, or
    `0.0.0.0/1` plus `128.0.0.0/1`): what counts is the set of addresses, not the string.
    Entries that are not CIDRs are left to the provider, which refuses them.
    """
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for source in sources:
        try:
            networks.append(ipaddress.ip_network(str(source).strip(), strict=False))
        except ValueError:
            continue
    # The same union test the program's config applies to sshAllowedCidrs.
    return world_families(networks)


@dataclass(frozen=True, slots=True)
class WorldOpenRule:
    """An inbound TCP firewall rule whose ports include one port, open to the whole internet."""

    index: int
    rule: Mapping[str, Any]
    sources: list[str]
    world: list[str]  # the address families whose whole range the sources cover


def world_open_rules(props: Mapping[str, Any], port: int) -> Iterator[WorldOpenRule]:
    """Each inbound TCP rule of a firewall whose ports include `port` and whose sourceIps
    cover the whole internet (the one walk no-world-ssh and no-world-api share)."""
    for index, raw in enumerate(_items(props.get("rules"))):
        rule = _mapping(raw)
        if str(rule.get("direction", "")).strip().lower() != "in":
            continue
        if str(rule.get("protocol", "")).strip().lower() != "tcp":
            continue
        ports = _port_range(rule.get("port"))
        if ports is None or not ports[0] <= port <= ports[1]:
            continue
        sources = [str(s) for s in _items(rule.get("sourceIps"))]
        world = world_cidrs(sources)
        if world:
            yield WorldOpenRule(index, rule, sources, world)


def world_ssh_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Inbound TCP rules whose ports include 22 and whose sources are the whole internet."""
    del opts  # part of the common check signature; firewall rules need no resource option
    if resource_type != FIREWALL:
        return []
    firewall = _label(props, "name")
    return [
        f"Hetzner firewall {firewall!r}, rule {o.index} ({_label(o.rule, 'description')}): "
        f"inbound TCP port {o.rule.get('port')!r} includes SSH (22) and its sourceIps "
        f"{o.sources} cover {' and '.join(o.world)}, the whole internet, where SSH is "
        f"brute-forced within minutes. List only the deployer's and operators' addresses in "
        f"sourceIps (e.g. 203.0.113.7/32), or drop the rule."
        for o in world_open_rules(props, SSH_PORT)
    ]


# --- control-plane-protected -------------------------------------------------------------------


def replacement_server(config: Mapping[str, str]) -> str | None:
    """`sovereign:replacement.server` of the stack config the engine passed, or None."""
    raw = config.get(REPLACEMENT_KEY)
    if not raw:
        return None
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        return None
    server = _mapping(value).get("server")
    return server if isinstance(server, str) and server else None


def stack_config(environ: Mapping[str, str] = os.environ) -> Mapping[str, str]:
    """The stack config in the pack's environment, {} outside an engine run."""
    try:
        value: object = json.loads(environ.get(CONFIG_ENV) or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in _mapping(value).items()}


def _is_server(name: str, server: str) -> bool:
    """Whether the physical name `omantel-fsn1-cp-2` is the server `cp-2` (never `cp-21`)."""
    return name == server or name.endswith(f"-{server}")


def control_plane_protection_violations(
    resource_type: str,
    props: Mapping[str, Any],
    opts: PolicyResourceOptions,
    replacement: str | None = None,
) -> list[str]:
    """Control-plane servers: Pulumi `protect`, Hetzner delete and rebuild protection, all on;
    except exactly the server `sovereign:replacement.server` names (`replacement`), which the
    program unprotects to replace it (docs/day2.md, "Replacing servers")."""
    if resource_type != SERVER:
        return []
    if _mapping(props.get("labels")).get(NODE_ROLE_LABEL) != "control-plane":
        return []
    name = _label(props, "name")
    if replacement is not None and _is_server(name, replacement):
        return []
    server = f"control-plane server {name!r} ({NODE_ROLE_LABEL}=control-plane)"
    if replacement is not None:
        server += f" is not sovereign:replacement.server ({replacement!r}) and"
    violations: list[str] = []
    if opts.protect is not True:
        violations.append(
            f"{server} does not have the Pulumi `protect` option on: a `pulumi destroy`, a "
            f"rename or a replacement would delete the node and the cluster state on it. "
            f"Pass `opts=pulumi.ResourceOptions(protect=True)` to the server."
        )
    for prop, action in (("deleteProtection", "deleted"), ("rebuildProtection", "rebuilt")):
        value = props.get(prop)
        if value is not True:
            violations.append(
                f"{server} has {prop}={'unset' if value is None else repr(value)}: anyone with "
                f"the project's API token or console access can have it {action}, wiping "
                f"the node. Set {prop}=True on the server."
            )
    return violations


# --- no-nodeport-control-plane -----------------------------------------------------------------


def _control_plane_word(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    lowered = name.lower()
    return next((word for word in CONTROL_PLANE_WORDS if word in lowered), None)


def _service_exposures(props: Mapping[str, Any]) -> list[str]:
    """Why a Service's ports belong to the control plane (empty when they do not)."""
    reasons: list[str] = []
    name = _at(props, "metadata", "name")
    if (word := _control_plane_word(name)) is not None:
        reasons.append(f"its name {name!r} contains {word!r}")
    for raw in _items(_at(props, "spec", "ports")):
        entry = _mapping(raw)
        for key in ("port", "targetPort"):
            value = entry.get(key)
            number = _as_int(value)
            if number is not None and number in CONTROL_PLANE_PORTS:
                reasons.append(f"{key} {number} is {CONTROL_PLANE_PORTS[number]}")
            elif (word := _control_plane_word(value)) is not None:
                reasons.append(f"{key} {value!r} names {word!r}")
        port_name = entry.get("name")
        if (word := _control_plane_word(port_name)) is not None:
            reasons.append(f"port name {port_name!r} contains {word!r}")
    return reasons


def _is_node_port(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == "nodeport"


def _release_node_port(chart: str, values: Mapping[str, Any]) -> str | None:
    """The NodePort a chart's values would create for a control-plane service, explained."""
    if chart == "cilium":
        clustermesh = _mapping(values.get("clustermesh"))
        service_type = _at(clustermesh, "apiserver", "service", "type")
        deployed = _go_truthy(clustermesh.get("useAPIServer")) or _go_truthy(
            _at(values, "externalWorkloads", "enabled")
        )
        if _is_node_port(service_type):
            return (
                "sets clustermesh.apiserver.service.type='NodePort', which publishes the "
                "clustermesh-apiserver (and the etcd inside it) on every node's address "
                "(now, or as soon as clustermesh.useAPIServer is on)"
            )
        if service_type is None and deployed:
            return (
                "turns on the clustermesh-apiserver (clustermesh.useAPIServer) and leaves "
                "clustermesh.apiserver.service.type unset; the chart's default is NodePort, "
                "which publishes it (and the etcd inside it) on every node's address"
            )
        return None
    if chart == "vcluster":
        service_type = _at(values, "controlPlane", "service", "spec", "type")
        if _is_node_port(service_type):
            return (
                "sets controlPlane.service.spec.type='NodePort', which publishes the "
                "vCluster's API server on every node's address"
            )
    return None


def control_plane_node_port_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """NodePort Services (or Helm values creating one) for an API server, etcd or clustermesh."""
    del opts  # part of the common check signature; the rule is about properties only
    if resource_type == SERVICE:
        service_type = _at(props, "spec", "type")
        if not _is_node_port(service_type):
            return []
        reasons = _service_exposures(props)
        if not reasons:
            return []
        namespace = _label(props, "metadata", "namespace")
        return [
            f"Service {namespace}/{_label(props, 'metadata', 'name')} has "
            f"spec.type={service_type!r} and serves the control plane ({'; '.join(reasons)}): "
            f"a NodePort opens it on every node's address, past the firewall rules that "
            f"guard the API server. Use spec.type 'ClusterIP' and reach it over the private "
            f"network or through the API server."
        ]
    if resource_type == HELM_RELEASE:
        chart = chart_name(props.get("chart"))
        why = _release_node_port(chart, _mapping(props.get("values")))
        if why is None:
            return []
        return [
            f"Helm release {_label(props, 'name')!r} (chart {chart!r}) {why}. Set that "
            f"service type to 'ClusterIP' in the release values (or 'LoadBalancer' restricted "
            f"with loadBalancerSourceRanges where another cluster must reach it)."
        ]
    return []


# --- helm-chart-version-pinned -----------------------------------------------------------------


def chart_version_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Helm releases and charts name one exact chart version: semver, optionally with a v."""
    del opts  # part of the common check signature; the rule is about properties only
    if resource_type == HELM_RELEASE:
        what = f"Helm release {_label(props, 'name')!r}"
    elif resource_type == HELM_CHART_V4:
        what = f"Helm chart {_label(props, 'name')!r}"
    else:
        return []
    chart = _label(props, "chart")
    version = props.get("version")
    if version is None or (isinstance(version, str) and not version.strip()):
        return [
            f"{what} (chart {chart!r}) has no version: Helm installs whatever the repository "
            f"serves as newest at that moment, so the same preview can deploy a different "
            f"chart tomorrow. Set version to the exact chart version you tested, e.g. '1.2.3'."
        ]
    text = str(version).strip()
    if EXACT_VERSION.fullmatch(text):
        return []
    kind = (
        "a version range" if _RANGE_MARKS.search(text) else "not an exact MAJOR.MINOR.PATCH version"
    )
    return [
        f"{what} (chart {chart!r}) asks for version {version!r}, {kind}: Helm resolves it to "
        f"the newest match when it installs, so the same preview can deploy a different chart "
        f"tomorrow. Pin the exact chart version you tested, e.g. '1.2.3'."
    ]


# --- vcluster-namespace-pod-security (stack) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """A stack violation and the resource it belongs to (None: the stack as a whole)."""

    message: str
    urn: str | None = None


def _is_level(value: object) -> TypeGuard[PodSecurityLevel]:
    return value in POD_SECURITY_LEVELS


def pod_security_refusal(
    values: Mapping[str, Any], namespace: str, level: PodSecurityLevel, version: str
) -> str | None:
    """PodSecurity's refusal of the pod the vcluster chart creates from `values`, or None.

    The evaluator is the program's own (render/pod_security.py), so the policy and the
    program's preflight judge the same pod the same way.
    """
    violations = evaluate(vcluster_pod_spec(values), level, version)
    if not violations:
        return None
    return refusal_message(namespace, level, version, violations)


def _same_cluster(a: PolicyResource, b: PolicyResource) -> bool:
    """Resources of two different Kubernetes providers live in two different clusters."""
    if a.provider is None or b.provider is None:
        return True
    return a.provider.urn == b.provider.urn


def vcluster_namespace_findings(
    resources: Sequence[PolicyResource], judge: PodSecurityJudge
) -> list[Finding]:
    """vCluster releases whose namespace's Pod Security `enforce` level refuses their pod.

    For each `vcluster` Helm release, the Namespace resource of the same cluster whose
    metadata.name is the release's namespace: its enforce label (and enforce-version, default
    `latest`) must admit the pod the chart creates from the release's values, as `judge`
    (normally `pod_security_refusal`) decides. A namespace without an enforce label leaves the
    cluster's default in force and is not judged here; a vCluster-host namespace without a
    release in this stack has no pod to judge.
    """
    namespaces = [r for r in resources if r.resource_type == NAMESPACE]
    findings: list[Finding] = []
    for release in resources:
        if release.resource_type != HELM_RELEASE:
            continue
        if chart_name(release.props.get("chart")) != "vcluster":
            continue
        target = release.props.get("namespace") or "default"
        release_name = _label(release.props, "name")
        for namespace in namespaces:
            if _at(namespace.props, "metadata", "name") != target:
                continue
            if not _same_cluster(release, namespace):
                continue
            finding = _judge_namespace(release, release_name, namespace, str(target), judge)
            if finding is not None:
                findings.append(finding)
    return findings


def _judge_namespace(
    release: PolicyResource,
    release_name: str,
    namespace: PolicyResource,
    name: str,
    judge: PodSecurityJudge,
) -> Finding | None:
    labels = _mapping(_at(namespace.props, "metadata", "labels"))
    level = labels.get(PSA_ENFORCE)
    if level is None:
        return None
    role = labels.get(VCLUSTER_ROLE_LABEL)
    host = f"namespace {name!r}" + (f" ({VCLUSTER_ROLE_LABEL}={role})" if role else "")
    if not _is_level(level):
        return Finding(
            f"{host} hosts vCluster release {release_name!r} and has {PSA_ENFORCE}={level!r}, "
            f"which is not a Pod Security level. Set it to 'privileged', 'baseline' or "
            f"'restricted' (one the vCluster pod passes).",
            namespace.urn,
        )
    version = labels.get(PSA_ENFORCE_VERSION) or "latest"
    if not isinstance(version, str) or not POD_SECURITY_VERSION.fullmatch(version):
        return Finding(
            f"{host} hosts vCluster release {release_name!r} and has "
            f"{PSA_ENFORCE_VERSION}={version!r}, which is not a Pod Security version. Set it "
            f"to 'latest' or a Kubernetes minor such as 'v1.31'.",
            namespace.urn,
        )
    refusal = judge(_plain(_mapping(release.props.get("values"))), name, level, version)
    if refusal is None:
        return None
    return Finding(
        f"{refusal}; {host} enforces {level!r} (version {version}), so the pod of vCluster "
        f"release {release_name!r} would never start. Set {PSA_ENFORCE} on the namespace to "
        f"a level the pod passes (e.g. 'baseline'), or harden the release's security "
        f"contexts (controlPlane.statefulSet.security) until every {level} check passes.",
        namespace.urn,
    )


# --- no-world-api -------------------------------------------------------------------------------


def _api_public(props: Mapping[str, Any]) -> bool:
    return _mapping(props.get("labels")).get(API_PUBLIC_LABEL) == "true"


def world_api_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Firewall rules opening TCP 6443 to the whole internet, unless labelled api-public."""
    del opts
    if resource_type != FIREWALL or _api_public(props):
        return []
    firewall = _label(props, "name")
    return [
        f"Hetzner firewall {firewall!r}, rule {o.index} ({_label(o.rule, 'description')}): "
        f"inbound TCP port {o.rule.get('port')!r} includes the Kubernetes API (6443) and its "
        f"sourceIps {o.sources} cover {' and '.join(o.world)}, the whole internet, but the "
        f"firewall does not carry {API_PUBLIC_LABEL}=true. List the deployer's and operators' "
        f"addresses (sovereign:access.apiAllowedCidrs), or set sovereign:api.public: true if a "
        f"public API is meant."
        for o in world_open_rules(props, API_PORT)
    ]


def public_api_load_balancer_findings(resources: Sequence[PolicyResource]) -> list[Finding]:
    """Load balancers serving 6443 on their public interface without api-public=true.

    Hetzner Cloud Firewalls do not apply to load balancers, so a public interface with a 6443
    service is the API open to the whole internet. A service or network attachment belongs to
    the load balancer it depends on (its `loadBalancerId`).
    """
    findings: list[Finding] = []
    for lb in resources:
        if lb.resource_type != LOAD_BALANCER or _api_public(lb.props):
            continue

        def of_lb(r: PolicyResource, lb: PolicyResource = lb) -> bool:
            return any(d.urn == lb.urn for d in r.dependencies)

        api = [
            r
            for r in resources
            if r.resource_type == LB_SERVICE
            and of_lb(r)
            and API_PORT
            in (_as_int(r.props.get("listenPort")), _as_int(r.props.get("destinationPort")))
        ]
        if not api:
            continue
        networks = [r for r in resources if r.resource_type == LB_NETWORK and of_lb(r)]
        # Hetzner's default: a load balancer keeps its public interface unless it is disabled
        # on its network attachment.
        if networks and all(n.props.get("enablePublicInterface") is False for n in networks):
            continue
        findings.append(
            Finding(
                f"Hetzner load balancer {_label(lb.props, 'name')!r} serves the Kubernetes API "
                f"(6443) on its public interface, which no Cloud Firewall filters, but does not "
                f"carry {API_PUBLIC_LABEL}=true. Disable its public interface "
                f"(enablePublicInterface: false on its network attachment; "
                f"sovereign:api.public: false), or set sovereign:api.public: true if a public "
                f"API is meant.",
                lb.urn,
            )
        )
    return findings


# --- no-plain-secret-in-user-data ----------------------------------------------------------------


def user_data_secret_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """A server whose user_data holds secret material must keep it secret.

    pulumi_policy hands a policy the plain values, whether or not an input was secret, so the
    pack judges what it can see: the server must list `userData` among its additional secret
    outputs. The program also passes user_data as a secret input (tests/test_secrets.py).
    """
    if resource_type != SERVER:
        return []
    try:
        user_data = props.get("userData")
    except UnknownValueError:
        return []
    if not isinstance(user_data, str) or not SECRET_MATERIAL.search(user_data):
        return []
    if "userData" in (opts.additional_secret_outputs or []):
        return []
    return [
        f"Hetzner server {_label(props, 'name')!r}: its user_data holds secret material (a "
        f"private key, a k3s token or an S3 secret key) and is not kept secret: `userData` is "
        f"not in the server's additional secret outputs, so state and previews can show it. "
        f"Pass the user_data as `pulumi.Output.secret(...)` and "
        f'`additional_secret_outputs=["user_data"]`.'
    ]


# --- image-pinned-by-digest (advisory) ----------------------------------------------------------


def _image_refs(value: object, path: str) -> list[tuple[str, str]]:
    """(path, image) for every image a values tree names: `image: repo:tag` strings,
    `{registry, repository, tag, digest}` mappings and `{name, tag}` mappings whose name is a
    repository path (the hcloud-csi chart's `<part>.image.<container>`)."""
    found: list[tuple[str, str]] = []
    mapping = _mapping(value)
    if mapping:
        name = mapping.get("name")
        if isinstance(name, str) and "/" in name and isinstance(mapping.get("tag"), str):
            found.append((path, f"{name}:{mapping.get('tag')}"))
        repository = mapping.get("repository")
        if isinstance(repository, str) and repository and ("tag" in mapping or "digest" in mapping):
            digest = mapping.get("digest")
            ref = "/".join(str(p) for p in (mapping.get("registry"), repository) if p)
            ref += f":{mapping.get('tag')}" if mapping.get("tag") else ""
            if isinstance(digest, str) and digest:
                ref += f"@{digest}"
            found.append((path, ref))
        for key, item in mapping.items():
            if (key == "image" or key.endswith(ENV_IMAGE_SUFFIX)) and isinstance(item, str):
                if item:
                    found.append((f"{path}.{key}".lstrip("."), item))
            else:
                found += _image_refs(item, f"{path}.{key}".lstrip("."))
        return found
    for index, item in enumerate(_items(value)):
        found += _image_refs(item, f"{path}[{index}]")
    return found


def image_digest_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Images a release's values or a workload name without a digest (advisory)."""
    del opts
    if resource_type in (HELM_RELEASE, HELM_CHART_V4):
        where = f"Helm release {_label(props, 'name')!r} values"
        refs = _image_refs(_plain(props.get("values")), "")
    elif resource_type in WORKLOADS or resource_type == SUC_PLAN:
        where = f"{resource_type.split(':')[-1]} {_label(props, 'metadata', 'name')!r}"
        refs = _image_refs(_plain(props.get("spec")), "spec")
    elif resource_type == CONFIG_GROUP:
        where = f"ConfigGroup objects ({len(_items(_plain(props.get('objs'))))})"
        refs = _image_refs(_plain(props.get("objs")), "objs")
    else:
        return []
    return [
        f"{where}: {path} names image {image!r} without a digest: a re-pushed tag changes what "
        f"runs. Pin it as `<image>:<tag>@sha256:<digest>` (keep the tag for people)."
        for path, image in refs
        if not DIGEST.search(image)
    ]


# --- pulumi_policy wiring ----------------------------------------------------------------------


def _resource_policy(
    name: str,
    description: str,
    check: ResourceCheck,
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> Policy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, args.opts):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level
    )


def _protection_for_this_stack(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    # Read at each validation: the engine sets the stack's config in the pack's environment.
    replacement = replacement_server(stack_config())
    return control_plane_protection_violations(resource_type, props, opts, replacement)


def _validate_public_api_load_balancers(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    for finding in public_api_load_balancer_findings(args.resources):
        report_violation(finding.message, finding.urn)


def _validate_vcluster_namespaces(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    for finding in vcluster_namespace_findings(args.resources, pod_security_refusal):
        report_violation(finding.message, finding.urn)


def policies() -> list[Policy]:
    """The pack's policies: MANDATORY, except the advisory image digests."""
    return [
        StackValidationPolicy(
            name="vcluster-namespace-pod-security",
            description=(
                "A vCluster's namespace may not enforce a Pod Security level that refuses "
                "the vCluster pod."
            ),
            validate=_validate_vcluster_namespaces,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        _resource_policy(
            "no-world-ssh",
            "Hetzner firewalls may not open TCP 22 (SSH) to 0.0.0.0/0 or ::/0.",
            world_ssh_violations,
        ),
        _resource_policy(
            "control-plane-protected",
            "Control-plane servers need Pulumi protect and Hetzner delete/rebuild protection, "
            "except the one server sovereign:replacement.server names.",
            _protection_for_this_stack,
        ),
        _resource_policy(
            "no-world-api",
            "Hetzner firewalls may not open TCP 6443 to the whole internet unless labelled "
            f"{API_PUBLIC_LABEL}=true.",
            world_api_violations,
        ),
        StackValidationPolicy(
            name="no-public-api-load-balancer",
            description=(
                "A load balancer may not serve 6443 on its public interface unless labelled "
                f"{API_PUBLIC_LABEL}=true."
            ),
            validate=_validate_public_api_load_balancers,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        _resource_policy(
            "no-plain-secret-in-user-data",
            "A server whose user_data holds secret material keeps it secret.",
            user_data_secret_violations,
        ),
        _resource_policy(
            "image-pinned-by-digest",
            "Images named in release values, workloads, applied manifests and upgrade Plans "
            "carry a digest (advisory while the pins have gaps).",
            image_digest_violations,
            EnforcementLevel.ADVISORY,
        ),
        _resource_policy(
            "no-nodeport-control-plane",
            "The API server, etcd and the clustermesh-apiserver may not be NodePort Services.",
            control_plane_node_port_violations,
        ),
        _resource_policy(
            "helm-chart-version-pinned",
            "Helm releases and charts pin one exact chart version.",
            chart_version_violations,
        ),
    ]
