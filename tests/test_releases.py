"""Helm releases: pinned charts, bounded waits, values that satisfy the charts' own schemas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from render.charts import VENDOR_DIR
from tools.mockrun import ROOT, Run, evaluate

RELEASE = "kubernetes:helm.sh/v3:Release"


def release(run: Run, name: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == name).inputs


def schema(file: str) -> dict[str, Any]:
    # Vendored in the repository (render/charts/, verified by tests/test_render_vendor.py):
    # a fresh clone runs every schema check, nothing is skipped.
    return json.loads((VENDOR_DIR / file).read_text())


@pytest.mark.parametrize(
    ("name", "package", "namespace"),
    [
        ("cilium", "render/charts/cilium-1.19.6.tgz", "kube-system"),
        ("cert-manager", "render/charts/cert-manager-v1.21.1.tgz", "cert-manager"),
        ("dmz-vcluster", "render/charts/vcluster-0.20.0.tgz", "dmz"),
        ("mgmt-vcluster", "render/charts/vcluster-0.20.0.tgz", "mgmt"),
    ],
)
def test_releases_install_the_vendored_package_from_a_local_path(
    primary: Run, name: str, package: str, namespace: str
) -> None:
    inputs = release(primary, name)
    assert (inputs["chart"], inputs["namespace"]) == (package, namespace)
    # No chart repository: Helm installs the package the tests rendered, nothing fetched.
    assert "repositoryOpts" not in inputs
    assert inputs["version"] == package.rsplit("-", 1)[1].removesuffix(".tgz")


def test_a_release_whose_package_changed_is_refused_before_it_is_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from render import charts, pins

    copy = tmp_path / "charts"
    shutil.copytree(VENDOR_DIR, copy)
    package = copy / "cert-manager-v1.21.1.tgz"
    package.write_bytes(package.read_bytes() + b"\0")
    monkeypatch.setattr(pins, "VENDOR_DIRS", (copy,))
    monkeypatch.setattr(charts, "VENDOR_DIR", copy)
    run = evaluate("primary")
    assert isinstance(run.error, pins.PinError)
    assert str(run.error).startswith(
        f"charts/cert-manager-v1.21.1.tgz: sha256 {pins.sha256(package)} but "
        "charts/vendor.yaml pins 8621717e7582f709e8b22638e20d2e4fa1d8e3abf8f2e46ccffe65efee665ce7"
    )
    names = {r.inputs.get("name") for r in run.of_type(RELEASE)}
    assert "cert-manager" not in names
    assert "cilium" in names, "the releases before it were declared from verified packages"


def test_no_manifest_or_chart_is_fetched_from_a_url_at_deploy_time() -> None:
    from render.pins import verified

    run = evaluate(
        "secondary",
        {"cilium": {"gatewayApi": {"enabled": True}}, "loadBalancer": {"enabled": True}},
    )
    applied: list[str] = []
    for reg in run.registrations:
        if reg.type in ("kubernetes:yaml/v2:ConfigGroup", "kubernetes:yaml/v2:ConfigFile"):
            files = reg.inputs.get("files") or [reg.inputs.get("file")]
            applied += [str(f) for f in files if f is not None]
        elif reg.type == RELEASE:
            applied.append(str(reg.inputs["chart"]))
    assert len(applied) >= 10, applied
    for path in applied:
        assert "://" not in path, path
        assert verified(ROOT / path), path
    # Nothing else the program registers names a URL it would fetch from.
    # (A Secret's payload is data for others to read: the autoscaler's servers fetch what their
    # boot names, `up` fetches nothing of it.)
    assert "://" not in json.dumps(
        [
            r.inputs
            for r in run.registrations
            if r.type.startswith("kubernetes:") and r.type != "kubernetes:core/v1:Secret"
        ]
    ).replace("https://127.0.0.1", "").replace("https://10.", "")


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
    # Neither loopback port answers on both node kinds; the API LB's private address does.
    assert (ha["k8sServiceHost"], ha["k8sServicePort"]) == ("10.0.1.253", 6443)
    assert single["ipam"] == {"mode": "kubernetes"}
    assert single["cluster"] == {"name": "omantel-fsn1", "id": 1}
    assert ha["cluster"] == {"name": "omantel-hel1-2", "id": 2}
    assert single["encryption"] == {"enabled": True, "type": "wireguard"}
    assert single["operator"]["replicas"] == 1
    assert ha["operator"]["replicas"] == 2


@pytest.mark.parametrize(
    ("stack", "host", "port", "kind"),
    [
        # Only servers run the apiserver on their loopback: an agent has nothing on :6443.
        ("primary", "127.0.0.1", 6443, "agent"),
        # Only agents run k3s's client load balancer: a server has nothing on :6444.
        ("secondary", "127.0.0.1", 6444, "server"),
    ],
)
def test_cilium_refuses_an_api_address_some_node_kind_does_not_have(
    monkeypatch: pytest.MonkeyPatch, stack: str, host: str, port: int, kind: str
) -> None:
    from checks.preflight import parse as parse_config
    from render import cilium, cloudinit
    from tools.mockrun import stack_config

    raw = {**stack_config(stack), "workers": {"general": {"serverType": "cpx32", "count": 1}}}
    cfg = parse_config(raw, stack)
    monkeypatch.setattr(cilium, "api_endpoint", lambda _: cloudinit.ApiEndpoint(host, port))
    with pytest.raises(
        cilium.UnreachableApiError,
        match=rf"k8sServiceHost {host}:{port}: no API server answers there on a k3s {kind}",
    ):
        cilium.cilium_values(cfg)


def test_metadata_endpoint_is_blocked_right_after_cilium(primary: Run) -> None:
    # Who the denies cover, exactly: tests/test_network_policy.py (the CSI node exception).
    policies = primary.of_type("kubernetes:cilium.io/v2:CiliumClusterwideNetworkPolicy")
    assert len(policies) == 3
    cilium = next(r for r in primary.of_type(RELEASE) if r.inputs["name"] == "cilium")
    for policy in policies:
        assert policy.inputs["spec"]["egressDeny"] == [{"toCIDR": ["169.254.169.254/32"]}]
        assert cilium.urn in policy.dependencies
    # The deny that once covered every pod narrows to "outside kube-system" only after the
    # kube-system denies exist (a live region is never without one).
    outside = next(p for p in policies if p.name == "slot-01-cilium-deny-metadata")
    assert {p.urn for p in policies if p is not outside} <= set(outside.dependencies)


def test_gateway_api_crds_are_applied_before_cilium() -> None:
    run = evaluate("primary", {"cilium": {"gatewayApi": {"enabled": True}}})
    crds = next(
        r
        for r in run.of_type("kubernetes:yaml/v2:ConfigGroup")
        if r.name.endswith("gateway-api-crds")
    )
    folder = "render/upstream/gateway-api-v1.4.0/"
    assert crds.inputs["files"] == [
        f"{folder}experimental/gateway.networking.k8s.io_tlsroutes.yaml",
        *(
            f"{folder}gateway.networking.k8s.io_{kind}.yaml"
            for kind in (
                "backendtlspolicies",
                "gatewayclasses",
                "gateways",
                "grpcroutes",
                "httproutes",
                "referencegrants",
            )
        ),
    ]
    cilium = next(r for r in run.of_type(RELEASE) if r.inputs["name"] == "cilium")
    assert crds.urn in cilium.dependencies
    assert cilium.inputs["values"]["gatewayAPI"]["enabled"] is True


def test_cert_manager_keeps_its_crds(primary: Run) -> None:
    assert release(primary, "cert-manager")["values"]["crds"] == {"enabled": True, "keep": True}
    assert release(primary, "cert-manager")["createNamespace"] is True


@pytest.mark.parametrize(
    ("name", "file", "validator"),
    [
        ("cilium", "cilium-1.19.6.values.schema.json", jsonschema.Draft7Validator),
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
