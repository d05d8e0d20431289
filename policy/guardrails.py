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
import re
from collections.abc import Callable, Mapping, Sequence
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

NODE_ROLE_LABEL: Final = "catalyst.openova.io/role"
VCLUSTER_ROLE_LABEL: Final = "catalyst.openova.io/vcluster-role"
PSA_ENFORCE: Final = f"{LABEL_PREFIX}enforce"
PSA_ENFORCE_VERSION: Final = f"{LABEL_PREFIX}enforce-version"

POD_SECURITY_LEVELS: Final = LEVELS
# What PodSecurity accepts in an `-version` label: `latest` or a Kubernetes minor, `v1.31`.
POD_SECURITY_VERSION: Final = VERSION_PATTERN

SSH_PORT: Final = 22
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


def world_ssh_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Inbound TCP rules whose ports include 22 and whose sources are the whole internet."""
    del opts  # part of the common check signature; firewall rules need no resource option
    if resource_type != FIREWALL:
        return []
    firewall = _label(props, "name")
    violations: list[str] = []
    for index, raw in enumerate(_items(props.get("rules"))):
        rule = _mapping(raw)
        if str(rule.get("direction", "")).strip().lower() != "in":
            continue
        if str(rule.get("protocol", "")).strip().lower() != "tcp":
            continue
        port = rule.get("port")
        ports = _port_range(port)
        if ports is None or not ports[0] <= SSH_PORT <= ports[1]:
            continue
        sources = [str(s) for s in _items(rule.get("sourceIps"))]
        world = world_cidrs(sources)
        if not world:
            continue
        violations.append(
            f"Hetzner firewall {firewall!r}, rule {index} ({_label(rule, 'description')}): "
            f"inbound TCP port {port!r} includes SSH (22) and its sourceIps {sources} cover "
            f"{' and '.join(world)}, the whole internet, where SSH is brute-forced within "
            f"minutes. List only the deployer's and operators' addresses in sourceIps "
            f"(e.g. 203.0.113.7/32), or drop the rule."
        )
    return violations


# --- control-plane-protected -------------------------------------------------------------------


def control_plane_protection_violations(
    resource_type: str, props: Mapping[str, Any], opts: PolicyResourceOptions
) -> list[str]:
    """Control-plane servers: Pulumi `protect`, Hetzner delete and rebuild protection, all on."""
    if resource_type != SERVER:
        return []
    if _mapping(props.get("labels")).get(NODE_ROLE_LABEL) != "control-plane":
        return []
    server = f"control-plane server {_label(props, 'name')!r} ({NODE_ROLE_LABEL}=control-plane)"
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


# --- pulumi_policy wiring ----------------------------------------------------------------------


def _resource_policy(name: str, description: str, check: ResourceCheck) -> Policy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, args.opts):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _validate_vcluster_namespaces(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    for finding in vcluster_namespace_findings(args.resources, pod_security_refusal):
        report_violation(finding.message, finding.urn)


def policies() -> list[Policy]:
    """The pack's policies, every one MANDATORY."""
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
            "Control-plane servers need Pulumi protect and Hetzner delete/rebuild protection.",
            control_plane_protection_violations,
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
