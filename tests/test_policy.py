"""The sovereign-guardrails policy pack (policy/): each policy against compliant and violating
resources, its pulumi_policy wiring, the pack as the CLI starts it, and the committed stacks
passing the whole pack.

Resources reach the policies the way pulumi_policy's analyzer hands them over: properties go
through a protobuf Struct (numbers become floats), are deserialized and wrapped in the proxy that
raises on values unknown during preview; options are real `PolicyResourceOptions`.
"""

from __future__ import annotations

import dataclasses
import runpy
from collections.abc import Mapping
from pathlib import Path
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
}


# --- the engine's view -------------------------------------------------------------------------


def engine_props(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """`props` as pulumi_policy's Analyze/AnalyzeStack hand them to a policy."""
    struct = struct_pb2.Struct()
    struct.update(props)
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def options(*, protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=protect,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def provider(urn: str = K8S_PROVIDER) -> PolicyProviderResource:
    return PolicyProviderResource(urn.split("::")[2], {}, urn, urn.rsplit("::", 1)[-1])


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:primary::sovereign::{type_}::{name}"


def policy_named(name: str) -> pulumi_policy.Policy:
    return next(p for p in guardrails.policies() if p.name == name)


def violations(
    name: str, type_: str, props: Mapping[str, Any], *, protect: bool = False
) -> list[str]:
    """Run one resource policy through its pulumi_policy `validate`, as the analyzer does."""
    policy = policy_named(name)
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[str] = []
    args = ResourceValidationArgs(
        type_, engine_props(props), urn(type_, "r"), "r", options(protect=protect), None
    )
    assert policy.validate(args, lambda message, _urn=None: reported.append(message)) is None
    return reported


# --- the pack ----------------------------------------------------------------------------------


def test_every_policy_is_mandatory_and_of_its_kind() -> None:
    found = {p.name: p for p in guardrails.policies()}
    assert set(found) == set(EXPECTED_POLICIES)
    for name, kind in EXPECTED_POLICIES.items():
        assert isinstance(found[name], kind), name
        assert found[name].enforcement_level is EnforcementLevel.MANDATORY, name


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
    assert all(p.enforcement_level is EnforcementLevel.MANDATORY for p in pack["policies"])


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


def policy_resource(reg: Registration) -> PolicyResource:
    prov = None
    if reg.provider:
        prov_urn = reg.provider.rsplit("::", 1)[0]
        prov = PolicyProviderResource(
            prov_urn.split("::")[2], {}, prov_urn, prov_urn.rsplit("::", 1)[-1]
        )
    return PolicyResource(
        reg.type,
        engine_props(reg.inputs),
        reg.urn,
        reg.name,
        options(protect=reg.protect),
        prov,
        None,
        [],
        {},
    )


def resource_violations(run: Run) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for policy in guardrails.policies():
        if not isinstance(policy, ResourceValidationPolicy):
            continue
        for reg in run.registrations:
            res = policy_resource(reg)
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


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_the_committed_stacks_pass_every_policy(stack: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(stack)
    for type_ in (FIREWALL, SERVER, NAMESPACE, RELEASE):
        assert run.of_type(type_), type_
    assert resource_violations(run) == {}
    resources = [policy_resource(reg) for reg in run.registrations]
    assert guardrails.vcluster_namespace_findings(resources, guardrails.pod_security_refusal) == []


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
