"""vCluster slots: PSS-labelled namespaces, ingress allow-lists, values, and the MGMT incident."""

from __future__ import annotations

from typing import Any

import yaml

from render.vcluster import ROOTLESS_CONTAINER
from tools.mockrun import Run, evaluate

NAMESPACE = "kubernetes:core/v1:Namespace"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"


def namespace(run: Run, name: str) -> dict[str, Any]:
    return next(r for r in run.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == name).inputs


def values(run: Run, release: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == release).inputs["values"]


def test_namespaces_carry_all_six_pod_security_labels(primary: Run) -> None:
    labels = namespace(primary, "mgmt")["metadata"]["labels"]
    assert labels == {
        "catalyst.openova.io/vcluster-role": "mgmt",
        "catalyst.openova.io/topology": "dod-a4",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }


def test_pod_security_labels_are_typed_inputs() -> None:
    run = evaluate(
        "secondary",
        {
            "vclusters": {
                "rtz": {
                    "podSecurity": {
                        "enforce": "privileged",
                        "audit": "baseline",
                        "warn": "baseline",
                        "version": "v1.31",
                    }
                }
            }
        },
    )
    labels = namespace(run, "rtz")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "baseline"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.31"
    bad = evaluate(
        "secondary",
        {"vclusters": {"rtz": {"podSecurity": {"enforce": "strict", "version": "1.31"}}}},
    )
    assert bad.registrations == []
    message = str(bad.error)
    assert (
        "sovereign:vclusters.rtz.podSecurity.enforce = 'strict': "
        "one of 'privileged', 'baseline' or 'restricted'"
    ) in message
    assert (
        "sovereign:vclusters.rtz.podSecurity.version = '1.31': `latest` or a Kubernetes minor"
        in message
    )


def test_mgmt_enforcing_restricted_is_refused_in_podsecuritys_words() -> None:
    # The seed incident, with rootless turned off: the chart's root pod under `restricted`.
    run = evaluate(
        "primary",
        {"vclusters": {"mgmt": {"rootless": False, "podSecurity": {"enforce": "restricted"}}}},
    )
    assert run.registrations == [], "the incident must fail before anything is created"
    message = str(run.error)
    assert "sovereign:vclusters.mgmt.podSecurity.enforce = 'restricted'" in message
    assert 'namespace "mgmt"' in message
    assert 'violates PodSecurity "restricted:latest"' in message
    for check in (
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "runAsUser=0",
        "seccompProfile",
    ):
        assert check in message
    for container in ("vcluster-copy", "kube-controller-manager", "kube-apiserver", "syncer"):
        assert f'"{container}"' in message
    assert "Use 'baseline', or harden sovereign:vclusters.mgmt.security" in message


HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_hardened_security_contexts_may_use_restricted() -> None:
    run = evaluate(
        "primary",
        {
            "vclusters": {
                "mgmt": {
                    "podSecurity": {"enforce": "restricted"},
                    "security": {
                        "podSecurityContext": {
                            "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containerSecurityContext": HARDENED,
                        "distroSecurityContext": HARDENED,
                    },
                }
            }
        },
    )
    assert run.error is None, run.error
    mgmt = values(run, "mgmt-vcluster")["controlPlane"]
    # The overrides merge over the rootless contexts (here: another UID).
    expected = {**ROOTLESS_CONTAINER, **HARDENED}
    assert mgmt["statefulSet"]["security"]["containerSecurityContext"] == expected
    assert mgmt["distro"]["k8s"]["securityContext"] == expected


def test_node_selector_is_exactly_the_label_k3s_sets(secondary: Run) -> None:
    server = secondary.of_type("hcloud:index/server:Server")[0]
    doc = yaml.safe_load(server.inputs["userData"])
    k3s = yaml.safe_load(
        next(f for f in doc["write_files"] if f["path"] == "/etc/rancher/k3s/config.yaml")[
            "content"
        ]
    )
    node_labels = dict(label.split("=", 1) for label in k3s["node-label"])
    for release in ("dmz-vcluster", "rtz-vcluster"):
        selector = values(secondary, release)["controlPlane"]["statefulSet"]["scheduling"][
            "nodeSelector"
        ]
        assert selector == {"openova.io/region": node_labels["openova.io/region"]}
        assert selector["openova.io/region"] != "hel1-2", "the bare region key left pods Pending"
    assert secondary.outputs["regionLabel"] == node_labels["openova.io/region"]


def test_vcluster_values_shape(primary: Run) -> None:
    v = values(primary, "dmz-vcluster")
    sts = v["controlPlane"]["statefulSet"]
    assert v["controlPlane"]["distro"]["k8s"]["enabled"] is True
    assert v["controlPlane"]["backingStore"] == {"database": {"embedded": {"enabled": True}}}
    # Upstream and public by default (issue 8 section 3): the OSS build of v0.20.0.
    assert sts["image"] == {
        "registry": "ghcr.io",
        "repository": "loft-sh/vcluster-oss",
        "tag": "0.20.0",
    }
    assert v["telemetry"] == {"enabled": False}
    assert sts["resources"] == {
        "requests": {"cpu": "200m", "memory": "384Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    # A Hetzner volume by default (slot 05), 10 GiB: Hetzner's smallest.
    assert sts["persistence"]["volumeClaim"] == {
        "enabled": True,
        "size": "10Gi",
        "storageClass": "hcloud-volumes",
    }
    assert v["controlPlane"]["service"]["spec"]["type"] == "ClusterIP"
    to_host = v["sync"]["toHost"]
    assert all(
        to_host[k]["enabled"]
        for k in ("services", "persistentVolumeClaims", "configMaps", "secrets")
    )
    assert to_host["ingresses"]["enabled"] is False


def test_image_digest_pin() -> None:
    digest = "sha256:" + "a" * 64
    run = evaluate("primary", {"vclusters": {"dmz": {"image": {"digest": digest}}}})
    assert (
        values(run, "dmz-vcluster")["controlPlane"]["statefulSet"]["image"]["tag"]
        == f"0.20.0@{digest}"
    )
    bad = evaluate("primary", {"vclusters": {"dmz": {"image": {"digest": "latest"}}}})
    assert (
        "sovereign:vclusters.dmz.image.digest = 'latest': an image digest: sha256: followed by 64"
        in str(bad.error)
    )


def test_release_waits_for_its_namespace_and_policy(primary: Run) -> None:
    for vcluster in ("dmz", "mgmt"):
        release = next(
            r for r in primary.of_type(RELEASE) if r.inputs["name"] == f"{vcluster}-vcluster"
        )
        ns = next(r for r in primary.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == vcluster)
        policy = next(
            r for r in primary.of_type(POLICY) if r.inputs["metadata"]["namespace"] == vcluster
        )
        assert ns.urn in release.dependencies
        assert policy.urn in release.dependencies
        assert release.inputs["namespace"] == vcluster
        assert release.inputs["createNamespace"] is False


def peers(run: Run, ns: str) -> list[dict[str, Any]]:
    policy = next(r for r in run.of_type(POLICY) if r.inputs["metadata"]["namespace"] == ns)
    spec = policy.inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"], "egress stays open"
    assert spec["podSelector"] == {}
    return spec["ingress"][0]["from"]


def allowed_namespaces(run: Run, ns: str) -> set[str]:
    return {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers(run, ns)
        if "namespaceSelector" in p
    }


def test_ingress_allow_lists(primary: Run, secondary: Run) -> None:
    # DMZ -> MGMT is a rule of its own, limited to ports (tests/test_network_policy.py).
    assert allowed_namespaces(primary, "mgmt") == set()
    assert allowed_namespaces(primary, "dmz") == {"mgmt", "rtz", "kube-system", "gateway-system"}
    assert allowed_namespaces(secondary, "rtz") == {"dmz"}
    for run, ns in ((primary, "mgmt"), (primary, "dmz"), (secondary, "rtz")):
        assert {"podSelector": {}} in peers(run, ns), "same-namespace traffic stays allowed"
    world = {"ipBlock": {"cidr": "0.0.0.0/0"}}
    assert world in peers(primary, "dmz")
    assert world not in peers(primary, "mgmt")
    assert world not in peers(secondary, "rtz")


def test_vcluster_gets_the_region_service_cidr_past_vclusters_fallback() -> None:
    # Index 16's default range 10.112.0.0/16 lies outside vCluster 0.20's fallback 10.96.0.0/12.
    run = evaluate("secondary", {"region": {"index": 16}})
    assert run.error is None, run.error
    assert run.outputs["serviceCidr"] == "10.112.0.0/16"
    for release in ("dmz-vcluster", "rtz-vcluster"):
        assert values(run, release)["serviceCIDR"] == "10.112.0.0/16"


def test_vcluster_gets_a_custom_service_cidr() -> None:
    run = evaluate("primary", {"network": {"serviceCidr": "172.20.0.0/16"}})
    assert run.error is None, run.error
    for release in ("dmz-vcluster", "mgmt-vcluster"):
        assert values(run, release)["serviceCIDR"] == "172.20.0.0/16"
