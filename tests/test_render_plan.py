"""The offline plan shows each release as Helm renders it; the PR diff shows images that move."""

from __future__ import annotations

import copy
import io
from typing import Any

from tools.mockrun import evaluate
from tools.plan import build_plan, main, summary
from tools.plan_diff import diff_plans, image_changes


def plan_of(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from checks.preflight import parse
    from tools.mockrun import _deep_merge, stack_config  # pyright: ignore[reportPrivateUsage]

    raw = _deep_merge(stack_config(stack), overrides or {})
    run = evaluate(stack, raw=raw)
    assert run.error is None, run.error
    return build_plan(parse(raw, stack), run)


def test_the_plan_lists_each_release_with_objects_by_kind_and_images() -> None:
    plan = plan_of("secondary")
    releases = {r["name"]: r for r in plan["releases"]}
    assert list(releases) == [
        "cilium",
        "cert-manager",
        "system-upgrade-controller",
        "hcloud-ccm",
        "hcloud-csi",
        "cluster-autoscaler",
        "dmz-vcluster",
        "rtz-vcluster",
    ]
    ccm = releases["hcloud-ccm"]
    assert (ccm["slot"], ccm["chart"], ccm["version"]) == (
        4,
        "hcloud-cloud-controller-manager",
        "1.35.0",
    )
    assert ccm["images"] == ["docker.io/hetznercloud/hcloud-cloud-controller-manager:v1.35.0"]
    # Slot 03 applies no chart: its vendored manifests are rendered and validated like one.
    suc = releases["system-upgrade-controller"]
    assert (suc["slot"], suc["version"], suc["namespace"]) == (3, "v0.20.1", "system-upgrade")
    assert suc["kinds"]["CustomResourceDefinition"] == 1
    assert suc["kinds"]["Deployment"] == 1
    # The controller, and the images its jobs pull (cordon/drain from its ConfigMap, the
    # upgrade from the Plans at the stack's k3s version).
    assert suc["images"] == [
        "rancher/k3s-upgrade:v1.35.6-k3s1",
        "rancher/kubectl:v1.30.3",
        "rancher/system-upgrade-controller:v0.20.1",
    ]
    rtz = releases["rtz-vcluster"]
    assert (rtz["slot"], rtz["chart"], rtz["version"], rtz["namespace"]) == (
        59,
        "vcluster",
        "0.20.0",
        "rtz",
    )
    assert rtz["kinds"]["StatefulSet"] == 1
    assert rtz["objects"] == sum(rtz["kinds"].values())
    assert "ghcr.io/loft-sh/vcluster-oss:0.20.0" in rtz["images"]
    assert releases["cert-manager"]["kinds"]["CustomResourceDefinition"] == 6
    assert plan["problems"] == []
    text = summary(plan)
    assert "59 rtz-vcluster (vcluster 0.20.0, namespace rtz): 9 objects: ConfigMap 1," in text
    assert "       quay.io/jetstack/cert-manager-webhook:v1.21.1" in text


def test_the_plan_renders_the_gateway_api_crds_of_the_cilium_line() -> None:
    plan = plan_of("primary", {"cilium": {"gatewayApi": {"enabled": True}}})
    crds = next(r for r in plan["releases"] if r["name"] == "gateway-api-crds")
    assert (crds["slot"], crds["chart"], crds["version"]) == (1, "gateway-api", "v1.4.0")
    assert crds["kinds"] == {"CustomResourceDefinition": 7}
    assert [r["name"] for r in plan["releases"]][:2] == ["gateway-api-crds", "cilium"]
    assert plan["problems"] == []


def test_a_plan_with_rendered_problems_lists_them_and_exits_1(tmp_path: Any) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "Pulumi.primary.yaml").read_text()
    stack.write_text(
        text.replace(
            "    dmz:\n",
            "    dmz:\n      security:\n        containerSecurityContext:\n          runAsUsr: 1000\n",
            1,
        )
    )
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["bad", "--dir", str(tmp_path), "--json", str(tmp_path / "bad.json")], out=out, err=err
    )
    assert code == 1
    assert (
        "release dmz-vcluster (slot 54) StatefulSet/dmz-vcluster "
        "spec.template.spec.containers[0].securityContext = invalid: Additional properties are "
        "not allowed ('runAsUsr' was unexpected)"
    ) in out.getvalue()


def test_a_version_bump_shows_every_image_that_moves() -> None:
    old = plan_of("primary")
    new = copy.deepcopy(old)
    cert = next(r for r in new["releases"] if r["name"] == "cert-manager")
    cert["version"] = "v1.22.0"
    cert["images"] = [i.replace("v1.21.1", "v1.22.0") for i in cert["images"]]
    lines = image_changes(old, new)
    assert lines[0] == "- release `cert-manager` (cert-manager v1.21.1 -> cert-manager v1.22.0):"
    assert "  - removed `quay.io/jetstack/cert-manager-webhook:v1.21.1`" in lines
    assert "  - added `quay.io/jetstack/cert-manager-webhook:v1.22.0`" in lines
    assert len(lines) == 1 + 2 * 5  # controller, webhook, cainjector, startupapicheck, solver
    comment = diff_plans(old, new)
    assert "#### Images" in comment
    assert "No changes." not in comment


def test_the_syncer_image_override_shows_in_the_diff() -> None:
    old = plan_of("primary")
    new = plan_of("primary", {"vclusters": {"dmz": {"image": {"repository": "loft-sh/vcluster"}}}})
    assert image_changes(old, new) == [
        "- release `dmz-vcluster` (vcluster 0.20.0):",
        "  - removed `ghcr.io/loft-sh/vcluster-oss:0.20.0`",
        "  - added `ghcr.io/loft-sh/vcluster:0.20.0`",
    ]
    assert image_changes(old, old) == []
