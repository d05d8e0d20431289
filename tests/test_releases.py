"""Helm releases: pinned charts, bounded waits, values that satisfy the charts' own schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from render.charts import VENDOR_DIR
from tools.mockrun import Run, evaluate

RELEASE = "kubernetes:helm.sh/v3:Release"


def release(run: Run, name: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == name).inputs


def schema(file: str) -> dict[str, Any]:
    # Vendored in the repository (render/charts/, verified by tests/test_render_vendor.py):
    # a fresh clone runs every schema check, nothing is skipped.
    return json.loads((VENDOR_DIR / file).read_text())


@pytest.mark.parametrize(
    ("name", "chart", "version", "repo", "namespace"),
    [
        ("cilium", "cilium", "1.18.12", "https://helm.cilium.io", "kube-system"),
        ("cert-manager", "cert-manager", "v1.21.1", "https://charts.jetstack.io", "cert-manager"),
        ("dmz-vcluster", "vcluster", "0.20.0", "https://charts.loft.sh", "dmz"),
        ("mgmt-vcluster", "vcluster", "0.20.0", "https://charts.loft.sh", "mgmt"),
    ],
)
def test_releases_are_pinned_with_explicit_names(
    primary: Run, name: str, chart: str, version: str, repo: str, namespace: str
) -> None:
    inputs = release(primary, name)
    assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (chart, version, namespace)
    assert inputs["repositoryOpts"]["repo"] == repo


def test_releases_wait_within_a_bound_and_clean_up_failed_installs(primary: Run) -> None:
    for reg in primary.of_type(RELEASE):
        assert reg.inputs["timeout"] == 600
        assert reg.inputs["atomic"] is True
        assert reg.inputs["cleanupOnFail"] is True
        assert reg.inputs.get("skipAwait") is False


def test_release_timeout_is_configurable() -> None:
    run = evaluate("primary", {"releases": {"timeoutSeconds": 900}})
    assert {r.inputs["timeout"] for r in run.of_type(RELEASE)} == {900}


def test_cilium_values(primary: Run, secondary: Run) -> None:
    single = release(primary, "cilium")["values"]
    ha = release(secondary, "cilium")["values"]
    assert single["kubeProxyReplacement"] is True
    assert (single["k8sServiceHost"], single["k8sServicePort"]) == ("10.0.1.2", 6443)
    assert (ha["k8sServiceHost"], ha["k8sServicePort"]) == ("127.0.0.1", 6444)
    assert single["ipam"] == {"mode": "kubernetes"}
    assert single["cluster"] == {"name": "omantel-fsn1", "id": 1}
    assert ha["cluster"] == {"name": "omantel-hel1-2", "id": 2}
    assert single["encryption"] == {"enabled": True, "type": "wireguard"}
    assert single["operator"]["replicas"] == 1
    assert ha["operator"]["replicas"] == 2


def test_cilium_refuses_an_api_address_workers_do_not_have(monkeypatch: pytest.MonkeyPatch) -> None:
    from checks.preflight import parse as parse_config
    from render import cilium, cloudinit
    from tools.mockrun import stack_config

    cfg = parse_config(stack_config("primary"), "primary")
    monkeypatch.setattr(cilium, "api_endpoint", lambda _: cloudinit.ApiEndpoint("127.0.0.1", 6443))
    with pytest.raises(
        cilium.UnreachableApiError, match=r"k8sServiceHost 127.0.0.1:6443 exists only on servers"
    ):
        cilium.cilium_values(cfg)


def test_metadata_endpoint_is_blocked_right_after_cilium(primary: Run) -> None:
    policy = primary.one("kubernetes:cilium.io/v2:CiliumClusterwideNetworkPolicy")
    assert policy.inputs["spec"]["egressDeny"] == [{"toCIDR": ["169.254.169.254/32"]}]
    assert policy.inputs["spec"]["endpointSelector"] == {}
    cilium = next(r for r in primary.of_type(RELEASE) if r.inputs["name"] == "cilium")
    assert cilium.urn in policy.dependencies


def test_gateway_api_crds_are_applied_before_cilium() -> None:
    run = evaluate("primary", {"cilium": {"gatewayApi": {"enabled": True}}})
    crds = run.one("kubernetes:yaml/v2:ConfigGroup")
    assert crds.inputs["files"][0].endswith("/v1.3.0/standard-install.yaml")
    assert crds.inputs["files"][1].endswith(
        "/v1.3.0/config/crd/experimental/gateway.networking.k8s.io_tlsroutes.yaml"
    )
    cilium = next(r for r in run.of_type(RELEASE) if r.inputs["name"] == "cilium")
    assert crds.urn in cilium.dependencies
    assert cilium.inputs["values"]["gatewayAPI"]["enabled"] is True


def test_cert_manager_keeps_its_crds(primary: Run) -> None:
    assert release(primary, "cert-manager")["values"] == {"crds": {"enabled": True, "keep": True}}
    assert release(primary, "cert-manager")["createNamespace"] is True


@pytest.mark.parametrize(
    ("name", "file", "validator"),
    [
        ("cilium", "cilium-1.18.12.values.schema.json", jsonschema.Draft7Validator),
        ("cert-manager", "cert-manager-v1.21.1.values.schema.json", jsonschema.Draft7Validator),
        ("dmz-vcluster", "vcluster-0.20.0.values.schema.json", jsonschema.Draft202012Validator),
        ("mgmt-vcluster", "vcluster-0.20.0.values.schema.json", jsonschema.Draft202012Validator),
    ],
)
def test_values_validate_against_the_charts_own_schema(
    primary: Run, name: str, file: str, validator: type[jsonschema.Draft7Validator]
) -> None:
    errors = [
        e.message for e in validator(schema(file)).iter_errors(release(primary, name)["values"])
    ]
    assert errors == []


def test_rtz_values_validate_against_the_vcluster_schema(secondary: Run) -> None:
    values = release(secondary, "rtz-vcluster")["values"]
    validator = jsonschema.Draft202012Validator(schema("vcluster-0.20.0.values.schema.json"))
    assert [e.message for e in validator.iter_errors(values)] == []


def test_vcluster_schema_catches_a_key_outside_the_020_shape() -> None:
    validator = jsonschema.Draft202012Validator(schema("vcluster-0.20.0.values.schema.json"))
    assert list(validator.iter_errors({"syncer": {"extraArgs": []}})), "0.19 keys must be refused"
