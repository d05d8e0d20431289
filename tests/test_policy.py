"""The sovereign-guardrails policy pack (policy/): each policy against compliant and violating
resources, its pulumi_policy wiring, the pack as the CLI starts it, and the committed stacks
passing the whole pack.

Resources reach the policies the way pulumi_policy's analyzer hands them over: properties go
through a protobuf Struct (numbers become floats), are deserialized and wrapped in the proxy that
raises on values unknown during preview; options are real `PolicyResourceOptions`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import runpy
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi_policy
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy import guardrails
from tools.mockrun import Registration, Run, evaluate

ROOT = Path(__file__).resolve().parent.parent
FIREWALL = "hcloud:index/firewall:Firewall"
SERVER = "hcloud:index/server:Server"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"
RELEASE = "kubernetes:helm.sh/v3:Release"
CHART_V4 = "kubernetes:helm.sh/v4:Chart"
K8S_PROVIDER = "urn:pulumi:primary::sovereign::pulumi:providers:kubernetes::omantel-fsn1-k8s"

EXPECTED_POLICIES = {
    "vcluster-namespace-pod-security": StackValidationPolicy,
    "no-world-ssh": ResourceValidationPolicy,
    "control-plane-protected": ResourceValidationPolicy,
    "no-nodeport-control-plane": ResourceValidationPolicy,
    "helm-chart-version-pinned": ResourceValidationPolicy,
    "no-world-api": ResourceValidationPolicy,
    "no-public-api-load-balancer": StackValidationPolicy,
    "no-plain-secret-in-user-data": ResourceValidationPolicy,
    "image-pinned-by-digest": ResourceValidationPolicy,
}
# Advisory while the digest pins have gaps (issue 16 §6); every other policy blocks.
ADVISORY = {"image-pinned-by-digest"}


# --- the engine's view -------------------------------------------------------------------------


def engine_props(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """`props` as pulumi_policy's Analyze/AnalyzeStack hand them to a policy."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def options(
    *, protect: bool = False, secret_outputs: list[str] | None = None
) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=secret_outputs or [],
    )


def provider(urn: str = K8S_PROVIDER) -> PolicyProviderResource:
    return PolicyProviderResource(urn.split("::")[2], {}, urn, urn.rsplit("::", 1)[-1])


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:primary::sovereign::{type_}::{name}"


def policy_named(name: str) -> pulumi_policy.Policy:
    return next(p for p in guardrails.policies() if p.name == name)


def violations(
    name: str,
    type_: str,
    props: Mapping[str, Any],
    *,
    protect: bool = False,
    secret_outputs: list[str] | None = None,
) -> list[str]:
    """Run one resource policy through its pulumi_policy `validate`, as the analyzer does."""
    policy = policy_named(name)
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[str] = []
    opts = options(protect=protect, secret_outputs=secret_outputs)
    args = ResourceValidationArgs(type_, engine_props(props), urn(type_, "r"), "r", opts, None)
    assert policy.validate(args, lambda message, _urn=None: reported.append(message)) is None
    return reported


# --- the pack ----------------------------------------------------------------------------------


def test_every_policy_is_mandatory_and_of_its_kind() -> None:
    found = {p.name: p for p in guardrails.policies()}
    assert set(found) == set(EXPECTED_POLICIES)
    for name, kind in EXPECTED_POLICIES.items():
        assert isinstance(found[name], kind), name
        level = EnforcementLevel.ADVISORY if name in ADVISORY else EnforcementLevel.MANDATORY
        assert found[name].enforcement_level is level, name


def test_the_cli_entry_point_serves_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pulumi preview --policy-pack policy/` runs the directory with runpy (pulumi.policy)."""
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: served.append(kwargs))
    runpy.run_path(str(ROOT / "policy"), run_name="__main__")
    assert len(served) == 1
    pack = served[0]
    assert pack["name"] == "sovereign-guardrails"
    assert pack["enforcement_level"] is EnforcementLevel.MANDATORY
    assert {p.name for p in pack["policies"]} == set(EXPECTED_POLICIES)
    assert {
        p.name for p in pack["policies"] if p.enforcement_level is not EnforcementLevel.MANDATORY
    } == ADVISORY


def test_pack_files_pin_the_sdk_and_use_a_virtualenv() -> None:
    requirements = (ROOT / "policy" / "requirements.txt").read_text().split()
    assert "pulumi==3.272.0" in requirements
    assert "pulumi-policy==1.21.0" in requirements
    project = (ROOT / "policy" / "PulumiPolicy.yaml").read_text()
    assert "name: python" in project
    assert "virtualenv: .venv" in project


# --- no-world-ssh ------------------------------------------------------------------------------


def firewall(*rules: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "omantel-fsn1", "rules": [dict(rule) for rule in rules]}


def rule(port: str = "22", sources: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "direction": "in",
        "protocol": "tcp",
        "port": port,
        "sourceIps": sources if sources is not None else ["0.0.0.0/0", "::/0"],
        "description": "ssh",
        **extra,
    }


def test_ssh_from_listed_addresses_and_other_world_ports_pass() -> None:
    props = firewall(
        rule(sources=["203.0.113.10/32", "2001:db8::/64"]),
        rule("6443", description="kubernetes api"),
        rule("80", description="http"),
        {"direction": "in", "protocol": "icmp", "sourceIps": ["0.0.0.0/0", "::/0"]},
        rule("51871", protocol="udp", description="cilium wireguard"),
    )
    assert violations("no-world-ssh", FIREWALL, props) == []


def test_ssh_open_to_the_world_is_refused_in_plain_words() -> None:
    assert violations("no-world-ssh", FIREWALL, firewall(rule())) == [
        "Hetzner firewall 'omantel-fsn1', rule 0 (ssh): inbound TCP port '22' includes SSH (22) and its sourceIps ['0.0.0.0/0', '::/0'] cover 0.0.0.0/0 and ::/0, the whole internet, where SSH is brute-forced within minutes. List only the deployer's and operators' addresses in sourceIps (e.g. 203.0.113.7/32), or drop the rule."
    ]


@pytest.mark.parametrize(
    ("port", "sources", "world"),
    [
        ("22", ["0.0.0.0/0"], "0.0.0.0/0"),
        ("22", ["203.0.113.10/32", "::/0"], "::/0"),
        ("20-30", ["0.0.0.0/0"], "0.0.0.0/0"),
        ("1-65535", ["0.0.0.0/0"], "0.0.0.0/0"),
        ("any", ["::/0"], "::/0"),
        ("22", ["0.0.0.0/1", "128.0.0.0/1"], "0.0.0.0/0"),
        ("22", ["10.1.2.3/0"], "0.0.0.0/0"),
    ],
)
def test_every_spelling_of_world_ssh_is_refused(port: str, sources: list[str], world: str) -> None:
    (message,) = violations("no-world-ssh", FIREWALL, firewall(rule(port, sources)))
    assert f"inbound TCP port {port!r} includes SSH" in message
    assert f"cover {world}, the whole internet" in message


@pytest.mark.parametrize(
    "other",
    [
        rule("2222"),
        rule("23-80"),
        rule("1-21"),
        rule(protocol="udp"),
        rule(direction="out", destinationIps=["0.0.0.0/0"]),
        rule(sources=["203.0.113.0/24", "0.0.0.0/1"]),
        rule(sources=["not-a-cidr"]),
    ],
)
def test_rules_that_do_not_open_ssh_to_the_world_pass(other: dict[str, Any]) -> None:
    assert violations("no-world-ssh", FIREWALL, firewall(other)) == []


def test_upper_case_direction_and_protocol_are_still_ssh() -> None:
    props = firewall(rule(direction="IN", protocol="TCP"))
    assert len(violations("no-world-ssh", FIREWALL, props)) == 1


def test_only_firewalls_are_judged_for_ssh() -> None:
    assert violations("no-world-ssh", "hcloud:index/network:Network", firewall(rule())) == []


def test_a_description_unknown_at_preview_does_not_stop_the_ssh_check() -> None:
    (message,) = violations(
        "no-world-ssh", FIREWALL, firewall(rule(description=UNKNOWN_STRING_VALUE))
    )
    assert message.startswith("Hetzner firewall 'omantel-fsn1', rule 0 ((not known yet)):")


def test_sources_unknown_at_preview_are_left_to_the_engine() -> None:
    """The analyzer turns UnknownValueError into an advisory "can't run during preview"."""
    with pytest.raises(UnknownValueError):
        violations("no-world-ssh", FIREWALL, firewall(rule(sources=[UNKNOWN_STRING_VALUE])))


# --- control-plane-protected -------------------------------------------------------------------


def server(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "omantel-fsn1-cp-1",
        "labels": {"catalyst.openova.io/role": "control-plane", "managed-by": "pulumi"},
        "deleteProtection": True,
        "rebuildProtection": True,
        **overrides,
    }


def test_a_fully_protected_control_plane_server_passes() -> None:
    assert violations("control-plane-protected", SERVER, server(), protect=True) == []


def test_servers_of_other_roles_are_not_judged() -> None:
    worker = server(labels={"catalyst.openova.io/role": "worker"}, deleteProtection=False)
    assert violations("control-plane-protected", SERVER, worker) == []
    assert violations("control-plane-protected", SERVER, server(labels=None)) == []


def test_a_server_without_pulumi_protect_is_refused() -> None:
    assert violations("control-plane-protected", SERVER, server(), protect=False) == [
        "control-plane server 'omantel-fsn1-cp-1' (catalyst.openova.io/role=control-plane) does not have the Pulumi `protect` option on: a `pulumi destroy`, a rename or a replacement would delete the node and the cluster state on it. Pass `opts=pulumi.ResourceOptions(protect=True)` to the server."
    ]


@pytest.mark.parametrize(
    ("prop", "value", "shown"),
    [
        ("deleteProtection", False, "False"),
        ("deleteProtection", None, "unset"),
        ("rebuildProtection", False, "False"),
        ("rebuildProtection", None, "unset"),
    ],
)
def test_hetzner_protection_off_or_unset_is_refused(prop: str, value: Any, shown: str) -> None:
    props = server()
    if value is None:
        del props[prop]
    else:
        props[prop] = value
    (message,) = violations("control-plane-protected", SERVER, props, protect=True)
    assert f"has {prop}={shown}:" in message
    assert message.endswith(f"Set {prop}=True on the server.")


def test_an_unprotected_server_gets_all_three_violations() -> None:
    props = server(deleteProtection=False, rebuildProtection=False)
    assert len(violations("control-plane-protected", SERVER, props)) == 3


# --- no-nodeport-control-plane -----------------------------------------------------------------


def service(
    type_: str, *ports: Mapping[str, Any], name: str = "web", namespace: str = "apps"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": type_, "ports": [dict(p) for p in ports]},
    }


def test_a_nodeport_api_server_is_refused_in_plain_words() -> None:
    props = service("NodePort", {"port": 6443, "targetPort": 6443}, name="api")
    assert violations("no-nodeport-control-plane", SERVICE, props) == [
        "Service apps/api has spec.type='NodePort' and serves the control plane (port 6443 is the Kubernetes API server; targetPort 6443 is the Kubernetes API server): a NodePort opens it on every node's address, past the firewall rules that guard the API server. Use spec.type 'ClusterIP' and reach it over the private network or through the API server."
    ]


@pytest.mark.parametrize(
    ("ports", "name", "reason"),
    [
        ({"port": 443, "targetPort": 6444}, "api", "targetPort 6444 is the kube-apiserver"),
        ({"port": 2379}, "db", "port 2379 is the etcd client API"),
        ({"port": 12380, "targetPort": 2380}, "db", "targetPort 2380 is the etcd peer API"),
        ({"port": 443, "targetPort": "kube-apiserver"}, "x", "targetPort 'kube-apiserver' names"),
        ({"port": 443, "name": "etcd-client"}, "x", "port name 'etcd-client' contains 'etcd'"),
        ({"port": 2379}, "clustermesh-apiserver", "its name 'clustermesh-apiserver' contains"),
        ({"port": 443}, "vcluster-apiserver", "its name 'vcluster-apiserver' contains"),
    ],
)
def test_control_plane_nodeports_are_refused(ports: dict[str, Any], name: str, reason: str) -> None:
    (message,) = violations(
        "no-nodeport-control-plane", SERVICE, service("NodePort", ports, name=name)
    )
    assert reason in message


@pytest.mark.parametrize(
    "props",
    [
        service("ClusterIP", {"port": 443, "targetPort": 6443}, name="kubernetes"),
        service("NodePort", {"port": 80, "nodePort": 30080}, name="gateway"),
        service("NodePort", {"port": 443, "targetPort": "https", "nodePort": 30443}),
        {"metadata": {"name": "etcd"}, "spec": {"ports": [{"port": 2379}]}},
    ],
)
def test_services_that_are_not_control_plane_nodeports_pass(props: dict[str, Any]) -> None:
    assert violations("no-nodeport-control-plane", SERVICE, props) == []


def release(chart: str, values: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{chart.rsplit('/', 1)[-1]}-release",
        "chart": chart,
        "version": "1.0.0",
        "values": dict(values),
        **extra,
    }


@pytest.mark.parametrize(
    ("chart", "values", "setting"),
    [
        (
            "cilium",
            {"clustermesh": {"apiserver": {"service": {"type": "NodePort"}}}},
            "sets clustermesh.apiserver.service.type='NodePort'",
        ),
        (
            "cilium",
            {"clustermesh": {"useAPIServer": True}},
            "leaves clustermesh.apiserver.service.type unset; the chart's default is NodePort",
        ),
        (
            "cilium/cilium",
            {"clustermesh": {"useAPIServer": True, "apiserver": {"service": {"type": "NodePort"}}}},
            "sets clustermesh.apiserver.service.type='NodePort'",
        ),
        (
            "vcluster",
            {"controlPlane": {"service": {"spec": {"type": "NodePort"}}}},
            "sets controlPlane.service.spec.type='NodePort'",
        ),
        (
            "oci://ghcr.io/loft-sh/vcluster",
            {"controlPlane": {"service": {"spec": {"type": "NodePort"}}}},
            "sets controlPlane.service.spec.type='NodePort'",
        ),
    ],
)
def test_releases_whose_values_create_a_control_plane_nodeport_are_refused(
    chart: str, values: dict[str, Any], setting: str
) -> None:
    (message,) = violations("no-nodeport-control-plane", RELEASE, release(chart, values))
    assert setting in message
    assert message.endswith(
        "Set that service type to 'ClusterIP' in the release values (or 'LoadBalancer' restricted with loadBalancerSourceRanges where another cluster must reach it)."
    )


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        ("cilium", {"kubeProxyReplacement": True, "cluster": {"name": "omantel-fsn1", "id": 1}}),
        (
            "cilium",
            {
                "clustermesh": {
                    "useAPIServer": True,
                    "apiserver": {"service": {"type": "LoadBalancer"}},
                }
            },
        ),
        ("cilium", {"clustermesh": {"useAPIServer": False}}),
        ("vcluster", {"controlPlane": {"service": {"spec": {"type": "ClusterIP"}}}}),
        ("vcluster", {}),
        ("ingress-nginx", {"controller": {"service": {"type": "NodePort"}}}),
    ],
)
def test_releases_without_a_control_plane_nodeport_pass(chart: str, values: dict[str, Any]) -> None:
    assert violations("no-nodeport-control-plane", RELEASE, release(chart, values)) == []


# --- helm-chart-version-pinned -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.20.0", "1.18.12", "v1.21.1", "1.2.3-rc.1", "1.2.3+build.5"])
def test_exact_chart_versions_pass(version: str) -> None:
    for type_ in (RELEASE, CHART_V4):
        props = release("cilium", {}, version=version)
        assert violations("helm-chart-version-pinned", type_, props) == []


def test_a_release_without_a_version_is_refused_in_plain_words() -> None:
    props = release("cilium", {})
    del props["version"]
    assert violations("helm-chart-version-pinned", RELEASE, props) == [
        "Helm release 'cilium-release' (chart 'cilium') has no version: Helm installs whatever the repository serves as newest at that moment, so the same preview can deploy a different chart tomorrow. Set version to the exact chart version you tested, e.g. '1.2.3'."
    ]


def test_a_version_range_is_refused_in_plain_words() -> None:
    props = release("vcluster", {}, version="^0.20")
    assert violations("helm-chart-version-pinned", RELEASE, props) == [
        "Helm release 'vcluster-release' (chart 'vcluster') asks for version '^0.20', a version range: Helm resolves it to the newest match when it installs, so the same preview can deploy a different chart tomorrow. Pin the exact chart version you tested, e.g. '1.2.3'."
    ]


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ("", "has no version"),
        ("  ", "has no version"),
        ("~1", "a version range"),
        (">=1.0.0", "a version range"),
        ("*", "a version range"),
        ("1.x", "a version range"),
        ("1.2.x", "a version range"),
        ("1.2.3 || 1.2.4", "a version range"),
        ("1.2", "not an exact MAJOR.MINOR.PATCH version"),
        ("latest", "not an exact MAJOR.MINOR.PATCH version"),
        ("01.2.3", "not an exact MAJOR.MINOR.PATCH version"),
    ],
)
def test_missing_partial_and_ranged_versions_are_refused(version: str, kind: str) -> None:
    for type_ in (RELEASE, CHART_V4):
        (message,) = violations(
            "helm-chart-version-pinned", type_, release("cilium", {}, version=version)
        )
        assert kind in message


def test_other_resource_types_need_no_chart_version() -> None:
    assert violations("helm-chart-version-pinned", SERVICE, {"version": "^1"}) == []


@pytest.mark.parametrize(
    ("chart", "name"),
    [
        ("vcluster", "vcluster"),
        ("loft/vcluster", "vcluster"),
        ("oci://ghcr.io/loft-sh/vcluster", "vcluster"),
        ("oci://ghcr.io/loft-sh/vcluster:0.20.0", "vcluster"),
        ("https://charts.loft.sh/vcluster-0.20.0.tgz", "vcluster"),
        ("./charts/vcluster/", "vcluster"),
        ("vcluster-k8s", "vcluster-k8s"),
        ("Cilium", "cilium"),
    ],
)
def test_chart_names_are_read_from_every_way_of_naming_a_chart(chart: str, name: str) -> None:
    assert guardrails.chart_name(chart) == name


# --- vcluster-namespace-pod-security (stack) ---------------------------------------------------


class FakeJudge:
    """Stands in for render.pod_security: refuses `restricted`, records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, str, str]] = []

    def __call__(
        self, values: Mapping[str, Any], namespace: str, level: str, version: str
    ) -> str | None:
        self.calls.append((values, namespace, level, version))
        if level != "restricted":
            return None
        return f'pods "{namespace}-0" is forbidden: violates PodSecurity "{level}:{version}": runAsNonRoot != true'


def resource(
    type_: str, name: str, props: Mapping[str, Any], *, provider_urn: str | None = K8S_PROVIDER
) -> PolicyResource:
    return PolicyResource(
        type_,
        engine_props(props),
        urn(type_, name),
        name,
        options(),
        provider(provider_urn) if provider_urn else None,
        None,
        [],
        {},
    )


def host_namespace(
    name: str = "mgmt", enforce: str | None = "restricted", version: str | None = None, **kw: Any
) -> PolicyResource:
    labels = {"catalyst.openova.io/vcluster-role": name}
    if enforce is not None:
        labels["pod-security.kubernetes.io/enforce"] = enforce
    if version is not None:
        labels["pod-security.kubernetes.io/enforce-version"] = version
    return resource(NAMESPACE, f"{name}-ns", {"metadata": {"name": name, "labels": labels}}, **kw)


VCLUSTER_VALUES = {"controlPlane": {"statefulSet": {"security": {"podSecurityContext": {}}}}}


def vcluster_release(
    namespace: str = "mgmt",
    chart: str = "vcluster",
    values: Mapping[str, Any] = VCLUSTER_VALUES,
    **kw: Any,
) -> PolicyResource:
    props = {
        "name": f"{namespace}-vcluster",
        "chart": chart,
        "version": "0.20.0",
        "namespace": namespace,
        "values": dict(values),
    }
    return resource(RELEASE, f"{namespace}-release", props, **kw)


def test_a_namespace_enforcing_a_level_that_refuses_the_vcluster_pod_is_refused() -> None:
    judge = FakeJudge()
    ns = host_namespace()
    findings = guardrails.vcluster_namespace_findings([ns, vcluster_release()], judge)
    assert findings == [
        guardrails.Finding(
            "pods \"mgmt-0\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true; namespace 'mgmt' (catalyst.openova.io/vcluster-role=mgmt) enforces 'restricted' (version latest), so the pod of vCluster release 'mgmt-vcluster' would never start. Set pod-security.kubernetes.io/enforce on the namespace to a level the pod passes (e.g. 'baseline'), or harden the release's security contexts (controlPlane.statefulSet.security) until every restricted check passes.",
            ns.urn,
        )
    ]
    # The evaluator gets plain JSON-shaped values, not the engine's proxies.
    ((values, namespace, level, version),) = judge.calls
    assert type(values) is dict
    assert values == VCLUSTER_VALUES
    assert (namespace, level, version) == ("mgmt", "restricted", "latest")


def test_a_level_the_pod_passes_is_accepted_and_the_version_label_is_used() -> None:
    judge = FakeJudge()
    resources = [host_namespace(enforce="baseline", version="v1.31"), vcluster_release()]
    assert guardrails.vcluster_namespace_findings(resources, judge) == []
    assert [call[1:] for call in judge.calls] == [("mgmt", "baseline", "v1.31")]


@pytest.mark.parametrize(
    ("enforce", "version", "wrong"),
    [
        (
            "strict",
            None,
            "pod-security.kubernetes.io/enforce='strict', which is not a Pod Security level",
        ),
        (
            "Restricted",
            None,
            "pod-security.kubernetes.io/enforce='Restricted', which is not a Pod Security level",
        ),
        (
            "baseline",
            "1.31",
            "pod-security.kubernetes.io/enforce-version='1.31', which is not a Pod Security version",
        ),
    ],
)
def test_labels_podsecurity_cannot_read_are_refused(
    enforce: str, version: str | None, wrong: str
) -> None:
    judge = FakeJudge()
    ns = host_namespace(enforce=enforce, version=version)
    (finding,) = guardrails.vcluster_namespace_findings([ns, vcluster_release()], judge)
    assert wrong in finding.message
    assert finding.urn == ns.urn
    assert judge.calls == []


@pytest.mark.parametrize(
    "resources",
    [
        # no enforce label: the cluster's default applies, nothing to judge here
        [host_namespace(enforce=None), vcluster_release()],
        # a vCluster-host namespace without a release in the stack
        [host_namespace()],
        # the release lives in another namespace
        [host_namespace("mgmt"), vcluster_release("dmz")],
        # same name, another cluster (another Kubernetes provider)
        [host_namespace(), vcluster_release(provider_urn=K8S_PROVIDER + "-other")],
        # not a vCluster chart
        [host_namespace(), vcluster_release(chart="cert-manager")],
    ],
)
def test_namespaces_without_a_vcluster_pod_of_theirs_are_not_judged(
    resources: list[PolicyResource],
) -> None:
    judge = FakeJudge()
    assert guardrails.vcluster_namespace_findings(resources, judge) == []
    assert judge.calls == []


def test_vcluster_charts_named_any_way_are_judged() -> None:
    resources = [
        host_namespace(),
        vcluster_release(chart="oci://ghcr.io/loft-sh/vcluster", provider_urn=None),
    ]
    assert len(guardrails.vcluster_namespace_findings(resources, FakeJudge())) == 1


def test_the_stack_policy_reports_each_finding_on_its_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guardrails, "pod_security_refusal", FakeJudge())
    policy = policy_named("vcluster-namespace-pod-security")
    assert isinstance(policy, StackValidationPolicy)
    ns = host_namespace()
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs(
        [ns, vcluster_release(), host_namespace("dmz", "baseline"), vcluster_release("dmz")]
    )
    assert policy.validate(args, lambda message, urn=None: reported.append((message, urn))) is None
    assert [urn for _, urn in reported] == [ns.urn]
    assert reported[0][0].startswith('pods "mgmt-0" is forbidden')


# --- the committed stacks pass the pack --------------------------------------------------------


def policy_resources(run: Run) -> list[PolicyResource]:
    """The stack as AnalyzeStack hands it over: options, providers and dependencies."""
    by_urn: dict[str, PolicyResource] = {}
    for reg in run.registrations:
        prov = None
        if reg.provider:
            prov_urn = reg.provider.rsplit("::", 1)[0]
            prov = PolicyProviderResource(
                prov_urn.split("::")[2], {}, prov_urn, prov_urn.rsplit("::", 1)[-1]
            )
        by_urn[reg.urn] = PolicyResource(
            reg.type,
            engine_props(reg.inputs),
            reg.urn,
            reg.name,
            options(protect=reg.protect, secret_outputs=list(reg.additional_secret_outputs)),
            prov,
            None,
            [by_urn[d] for d in reg.dependencies if d in by_urn],
            {},
        )
    return list(by_urn.values())


def policy_resource(reg: Registration) -> PolicyResource:
    return PolicyResource(
        reg.type,
        engine_props(reg.inputs),
        reg.urn,
        reg.name,
        options(protect=reg.protect, secret_outputs=list(reg.additional_secret_outputs)),
        None,
        None,
        [],
        {},
    )


def resource_violations(run: Run, *, advisory: bool = False) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in guardrails.policies():
        if not isinstance(policy, ResourceValidationPolicy):
            continue
        if (policy.enforcement_level is EnforcementLevel.ADVISORY) != advisory:
            continue
        for res in policy_resources(run):
            args = ResourceValidationArgs(
                res.resource_type, res.props, res.urn, res.name, res.opts, res.provider
            )
            policy.validate(
                args,
                lambda message, _urn=None, name=policy.name: found.setdefault(name, []).append(
                    message
                ),
            )
    return found


def stack_violations(run: Run) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in guardrails.policies():
        if isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs(policy_resources(run), {})
            policy.validate(
                args,
                lambda message, _urn=None, name=policy.name: found.setdefault(name, []).append(
                    message
                ),
            )
    return found


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_the_committed_stacks_pass_every_policy(stack: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(stack)
    for type_ in (FIREWALL, SERVER, NAMESPACE, RELEASE):
        assert run.of_type(type_), type_
    assert resource_violations(run) == {}
    assert stack_violations(run) == {}


def test_turning_off_control_plane_protection_in_config_is_caught_by_the_pack() -> None:
    run = evaluate("primary", {"controlPlane": {"protect": False}})
    assert run.error is None, run.error
    found = resource_violations(run)
    assert set(found) == {"control-plane-protected"}
    assert len(found["control-plane-protected"]) == 3


def test_the_mgmt_incident_is_caught_by_the_pack() -> None:
    """MGMT shipped with enforce=restricted while its syncer runs as root: 5/6 vClusters."""
    root = evaluate(
        "primary",
        {"vclusters": {"mgmt": {"rootless": False, "podSecurity": {"enforce": "baseline"}}}},
    )
    assert root.error is None, root.error
    resources = []
    for reg in root.registrations:
        res = policy_resource(reg)
        if reg.type == NAMESPACE and reg.inputs["metadata"]["name"] == "mgmt":
            inputs = {**reg.inputs, "metadata": {**reg.inputs["metadata"]}}
            inputs["metadata"]["labels"] = {
                **inputs["metadata"]["labels"],
                "pod-security.kubernetes.io/enforce": "restricted",
            }
            res = policy_resource(dataclasses.replace(reg, inputs=inputs))
        resources.append(res)
    (finding,) = guardrails.vcluster_namespace_findings(resources, guardrails.pod_security_refusal)
    assert (
        "namespace 'mgmt' (catalyst.openova.io/vcluster-role=mgmt) enforces 'restricted'"
        in finding.message
    )
    assert "vCluster release 'mgmt-vcluster' would never start" in finding.message
    assert finding.urn is not None
    assert finding.urn.endswith("-ns")


# --- control-plane-protected: the one server being replaced -----------------------------------


def replacing(server_name: str) -> dict[str, str]:
    """The engine's PULUMI_CONFIG for a stack replacing `server_name` (object values as JSON)."""
    return {
        "PULUMI_CONFIG": json.dumps({"sovereign:replacement": json.dumps({"server": server_name})})
    }


def test_exactly_the_server_named_in_replacement_may_be_unprotected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unprotected = server(
        name="omantel-hel1-2-cp-2", deleteProtection=False, rebuildProtection=False
    )
    monkeypatch.setenv("PULUMI_CONFIG", replacing("cp-2")["PULUMI_CONFIG"])
    assert violations("control-plane-protected", SERVER, unprotected) == []
    # cp-1 is not the named server, nor is cp-21 (a suffix of another name)
    for other in ("omantel-hel1-2-cp-1", "omantel-hel1-2-cp-21"):
        found = violations("control-plane-protected", SERVER, {**unprotected, "name": other})
        assert len(found) == 3
        assert "is not sovereign:replacement.server ('cp-2')" in found[0]
    monkeypatch.delenv("PULUMI_CONFIG")
    assert len(violations("control-plane-protected", SERVER, unprotected)) == 3


def test_a_replacement_run_passes_the_pack_with_its_stack_config_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = evaluate(
        "secondary", {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-2"}}
    )
    assert run.error is None, run.error
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    found = resource_violations(run)
    assert set(found) == {"control-plane-protected"}
    assert all("omantel-hel1-2-cp-2" in message for message in found["control-plane-protected"])
    monkeypatch.setenv("PULUMI_CONFIG", replacing("cp-2")["PULUMI_CONFIG"])
    assert resource_violations(run) == {}


def test_replacement_server_reads_the_engine_config_and_ignores_garbage() -> None:
    assert guardrails.replacement_server(guardrails.stack_config(replacing("cp-3"))) == "cp-3"
    assert guardrails.replacement_server({"sovereign:replacement": "{}"}) is None
    assert guardrails.replacement_server({"sovereign:replacement": "not json"}) is None
    assert guardrails.stack_config({"PULUMI_CONFIG": "]"}) == {}


# --- no-world-api and no-public-api-load-balancer ---------------------------------------------


def api_rule(sources: list[str], port: str = "6443") -> dict[str, Any]:
    return rule(port=port, sources=sources, description="kubernetes-api")


def test_a_world_open_api_is_refused_unless_the_firewall_says_it_is_public() -> None:
    world = firewall(api_rule(["0.0.0.0/0", "::/0"]))
    (message,) = violations("no-world-api", FIREWALL, world)
    assert "includes the Kubernetes API (6443)" in message
    assert "openova.io/api-public=true" in message
    public = {**world, "labels": {guardrails.API_PUBLIC_LABEL: "true"}}
    assert violations("no-world-api", FIREWALL, public) == []
    marked_false = {**world, "labels": {guardrails.API_PUBLIC_LABEL: "false"}}
    assert len(violations("no-world-api", FIREWALL, marked_false)) == 1


@pytest.mark.parametrize(
    "other",
    [
        api_rule(["203.0.113.10/32"]),
        api_rule(["0.0.0.0/0"], port="443"),
        rule(port="6443", sources=["0.0.0.0/0"], direction="out"),
    ],
)
def test_an_api_open_to_listed_sources_or_other_world_ports_pass(other: dict[str, Any]) -> None:
    assert violations("no-world-api", FIREWALL, firewall(other)) == []


def test_a_range_or_any_port_that_covers_6443_counts() -> None:
    assert violations("no-world-api", FIREWALL, firewall(api_rule(["0.0.0.0/0"], port="any")))
    assert violations("no-world-api", FIREWALL, firewall(api_rule(["::/0"], port="6000-7000")))


def test_opening_the_api_to_the_world_in_config_needs_api_public_and_then_passes_the_pack() -> None:
    # Without sovereign:api.public the program refuses it before the pack runs; with it, the
    # firewall carries openova.io/api-public=true, which the pack's no-world-api accepts.
    world = {"access": {"apiAllowedCidrs": ["0.0.0.0/0", "::/0"]}}
    assert "sovereign:api.public: true" in str(evaluate("primary", world).error)
    run = evaluate("primary", {**world, "api": {"public": True}})
    assert run.error is None, run.error
    assert "no-world-api" not in set(resource_violations(run))


LB_URN = urn(guardrails.LOAD_BALANCER, "api-lb")


def lb_stack(
    *, labels: Mapping[str, str] | None = None, public: bool | None = None, port: int = 6443
) -> list[PolicyResource]:
    """An API load balancer, its service and its network attachment, linked as AnalyzeStack
    links them: the service and the attachment depend on the load balancer."""

    def make(
        type_: str, name: str, props: Mapping[str, Any], deps: list[PolicyResource]
    ) -> PolicyResource:
        return PolicyResource(
            type_, engine_props(props), urn(type_, name), name, options(), None, None, deps, {}
        )

    lb = make(
        guardrails.LOAD_BALANCER,
        "api-lb",
        {"name": "omantel-hel1-2-api", "labels": dict(labels or {})},
        [],
    )
    service_props = {"listenPort": port, "destinationPort": port, "protocol": "tcp"}
    network_props: dict[str, Any] = {"ip": "10.0.0.250"}
    if public is not None:
        network_props["enablePublicInterface"] = public
    return [
        lb,
        make(guardrails.LB_SERVICE, "api-lb-svc", service_props, [lb]),
        make(guardrails.LB_NETWORK, "api-lb-net", network_props, [lb]),
    ]


def test_a_load_balancer_serving_the_api_publicly_needs_the_public_label() -> None:
    (finding,) = guardrails.public_api_load_balancer_findings(lb_stack())
    assert "omantel-hel1-2-api" in finding.message
    assert "no Cloud Firewall filters" in finding.message
    assert finding.urn == LB_URN
    assert len(guardrails.public_api_load_balancer_findings(lb_stack(public=True))) == 1


@pytest.mark.parametrize(
    "stack",
    [
        {"labels": {guardrails.API_PUBLIC_LABEL: "true"}},
        {"public": False},
        {"port": 443},
    ],
)
def test_a_labelled_private_or_non_api_load_balancer_passes(stack: dict[str, Any]) -> None:
    assert guardrails.public_api_load_balancer_findings(lb_stack(**stack)) == []


def test_the_stack_policy_reports_the_public_api_load_balancer() -> None:
    policy = policy_named("no-public-api-load-balancer")
    assert isinstance(policy, StackValidationPolicy)
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs(lb_stack(), {})
    policy.validate(args, lambda message, urn_=None: reported.append((message, urn_)))
    assert [u for _, u in reported] == [LB_URN]


def test_the_committed_api_load_balancer_is_labelled_public_and_caught_without_it() -> None:
    run = evaluate("secondary")
    assert run.error is None, run.error
    (lb,) = run.of_type(guardrails.LOAD_BALANCER)[:1]
    assert lb.inputs["labels"][guardrails.API_PUBLIC_LABEL] == "true"
    for reg in run.registrations:
        if reg.type == guardrails.LOAD_BALANCER:
            del reg.inputs["labels"][guardrails.API_PUBLIC_LABEL]
    assert set(stack_violations(run)) == {"no-public-api-load-balancer"}


# --- no-plain-secret-in-user-data --------------------------------------------------------------

BOOT_WITH_TOKEN = "#cloud-config\nwrite_files:\n  - path: /etc/rancher/k3s/config.yaml\n    content: |\n      token: abcdef0123456789\n"
BOOT_WITH_KEY = "#cloud-config\nwrite_files:\n  - content: |\n      -----BEGIN EC PRIVATE KEY-----\n      MHc...\n"


@pytest.mark.parametrize("user_data", [BOOT_WITH_TOKEN, BOOT_WITH_KEY])
def test_user_data_with_secret_material_must_be_kept_secret(user_data: str) -> None:
    props = server(userData=user_data)
    (message,) = violations("no-plain-secret-in-user-data", SERVER, props)
    assert "its user_data holds secret material" in message
    assert (
        violations("no-plain-secret-in-user-data", SERVER, props, secret_outputs=["userData"]) == []
    )


def test_user_data_without_secret_material_passes() -> None:
    props = server(userData="#cloud-config\npackages: [curl]\n")
    assert violations("no-plain-secret-in-user-data", SERVER, props) == []


def test_the_committed_servers_keep_user_data_secret_and_are_caught_without_it() -> None:
    run = evaluate("primary")
    assert run.error is None, run.error
    (cp1,) = run.of_type(SERVER)[:1]
    assert "userData" in cp1.additional_secret_outputs
    assert "userData" in cp1.secret_inputs
    for reg in run.of_type(SERVER):
        reg.additional_secret_outputs.clear()
    assert set(resource_violations(run)) == {"no-plain-secret-in-user-data"}


# --- image-pinned-by-digest (advisory) ---------------------------------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"registry": "ghcr.io", "repository": "loft-sh/vcluster-oss", "tag": "0.20.0"}},
        {"controller": {"image": "quay.io/jetstack/cert-manager-controller:v1.17.2"}},
    ],
)
def test_an_image_without_a_digest_is_reported(values: dict[str, Any]) -> None:
    (message,) = violations(
        "image-pinned-by-digest", RELEASE, release("vcluster", values, name="dmz")
    )
    assert "without a digest" in message


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"repository": "loft-sh/vcluster-oss", "tag": "0.20.0", "digest": DIGEST}},
        {"controller": {"image": f"quay.io/jetstack/cert-manager-controller:v1.17.2@{DIGEST}"}},
        {"replicas": 2},
    ],
)
def test_an_image_pinned_by_digest_passes(values: dict[str, Any]) -> None:
    assert violations("image-pinned-by-digest", RELEASE, release("vcluster", values)) == []


def test_workload_containers_are_judged_too() -> None:
    deployment = {
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx:1.27"}]}}},
    }
    (message,) = violations("image-pinned-by-digest", "kubernetes:apps/v1:Deployment", deployment)
    assert "'nginx:1.27'" in message


def test_the_committed_stacks_get_image_advice_without_being_refused() -> None:
    run = evaluate("primary")
    assert run.error is None, run.error
    advice = resource_violations(run, advisory=True)
    assert set(advice) == {"image-pinned-by-digest"}
    assert any("loft-sh/vcluster-oss" in message for message in advice["image-pinned-by-digest"])


def test_the_digest_advice_names_exactly_the_images_the_plan_warns_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One data file (render/image_digests.yaml) decides both: what the plan lists as unpinned is
    # what the pack advises about, and once every entry is filled neither says anything.
    from checks.preflight import parse
    from checks.rendered import release_images, render_releases
    from render import pins
    from tools.mockrun import stack_config

    def unpinned() -> list[str]:
        cfg = parse(stack_config("primary"), "primary")
        return sorted(
            {
                image
                for release in render_releases(cfg)
                for image in release_images(cfg, release)
                if pins.DIGEST_MARK not in image
            }
        )

    def advised() -> set[str]:
        run = evaluate("primary")
        messages = resource_violations(run, advisory=True).get("image-pinned-by-digest", [])
        named = [re.search(r"names image '([^']+)'", message) for message in messages]
        return {m.group(1).split("@")[0].rsplit(":", 1)[0] for m in named if m}

    refs = unpinned()
    assert "quay.io/jetstack/cert-manager-controller:v1.21.1" in refs
    assert advised() == {ref.rsplit(":", 1)[0] for ref in refs}
    entry = {"source": "https://registry.test/", "checked": "2026-12-04"}
    table = {ref: {**entry, "digest": f"sha256:{'c' * 64}"} for ref in refs}
    (tmp_path / "image_digests.yaml").write_text(json.dumps({"images": table}))
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", tmp_path / "image_digests.yaml")
    assert unpinned() == []
    assert advised() == set()


# --- the pack runs on up and preview (issue 16 §6) ---------------------------------------------


class RecordingStack:
    """Stands in for pulumi.automation.Stack: records each operation's keyword arguments."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}

    def up(self, **kwargs: Any) -> Any:
        self.calls["up"] = kwargs
        return SimpleNamespace(summary=SimpleNamespace(resource_changes={"same": 1}))

    def preview(self, **kwargs: Any) -> Any:
        self.calls["preview"] = kwargs
        return SimpleNamespace(change_summary={"same": 1})


def test_fleet_up_and_preview_run_the_policy_pack() -> None:
    from tools.fleet import POLICY_PACK, AutomationStack

    recorded = RecordingStack()
    stack = AutomationStack(recorded)
    stack.up(lambda _line: None)
    stack.preview(lambda _line: None)
    assert recorded.calls["up"]["policy_packs"] == [str(POLICY_PACK)]
    assert recorded.calls["preview"]["policy_packs"] == [str(POLICY_PACK)]
    assert POLICY_PACK == ROOT / "policy"
    assert (POLICY_PACK / "PulumiPolicy.yaml").is_file()


def test_the_single_stack_cli_and_the_ci_paths_run_the_policy_pack() -> None:
    script = (ROOT / "sovereign").read_text()
    assert 'exec pulumi "$cmd" --stack "$stack" --policy-pack policy "$@"' in script
    # up-stack.yml deploys through the fleet, whose `up` carries the pack (test above)
    up_stack = (ROOT / ".github" / "workflows" / "up-stack.yml").read_text()
    assert './sovereign up --stacks "$STACK"' in up_stack
    from tools.ci_preview import PREVIEW_FLAGS

    assert PREVIEW_FLAGS[PREVIEW_FLAGS.index("--policy-pack") + 1] == "policy"
