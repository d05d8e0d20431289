"""Image digests from render/image_digests.yaml, rendered into every release and manifest.

The real file holds no digest (no registry is reachable here), so these tests point the one
loader at a fixture file (`pins.IMAGE_DIGESTS_FILE`): the program and the plan then read it
exactly as they read the real one. The fixture's digests are the sha256 of each reference's
name, which no registry serves: they prove the wiring, not any image.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from checks import rendered as checks
from checks.preflight import parse
from config.models import StackConfig
from render import pins
from render.system_upgrade import AGENT_PLAN_NAME, SERVER_PLAN_NAME
from tools.mockrun import evaluate, stack_config

PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"
SERVER = "hcloud:index/server:Server"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
RELEASE = "kubernetes:helm.sh/v3:Release"
# The secondary runs a worker pool, so it has the agent Plan too.
STACKS = ("primary", "secondary")


def cfg_of(stack: str, overrides: dict[str, Any] | None = None) -> StackConfig:
    raw = stack_config(stack)
    for key, value in (overrides or {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse(raw, stack)


def fake_digest(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def write_digests(path: Path, refs: list[str]) -> Path:
    entry = {"checked": "2026-12-04"}
    table = {
        ref: {**entry, "digest": fake_digest(ref), "source": f"https://registry.test/{ref}"}
        for ref in refs
    }
    path.write_text(yaml.safe_dump({"images": table}))
    return path


def rendered_images(cfg: StackConfig) -> dict[str, list[str]]:
    return {
        release.spec.name: checks.release_images(cfg, release)
        for release in checks.render_releases(cfg)
    }


def unpinned_refs(stacks: tuple[str, ...] = STACKS) -> list[str]:
    """Every reference the stacks render without a digest, with the real (empty) data."""
    return sorted(
        {
            image
            for stack in stacks
            for images in rendered_images(cfg_of(stack)).values()
            for image in images
            if pins.DIGEST_MARK not in image
        }
    )


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data filled for every image the committed stacks render without a digest."""
    refs = unpinned_refs()
    monkeypatch.setattr(
        pins, "IMAGE_DIGESTS_FILE", write_digests(tmp_path / "image_digests.yaml", refs)
    )
    return refs


def test_the_committed_data_file_is_empty_and_well_formed() -> None:
    # Nothing could be resolved here; an entry would be an invented digest.
    assert pins.load_image_digests(pins.IMAGE_DIGESTS_FILE) == {}
    assert "python -m tools.resolve_pins image" in pins.IMAGE_DIGESTS_FILE.read_text()


def test_every_kind_of_image_is_unpinned_today_and_listed() -> None:
    refs = unpinned_refs()
    # cert-manager's five, the upgrade controller with its two job images, the vCluster syncer,
    # its virtual control plane and the CoreDNS it deploys, the Hetzner CCM (later slots add
    # theirs); never Cilium's (the chart pins them).
    assert not [r for r in refs if "cilium" in r]
    assert {r for r in refs if not r.startswith("rancher/k3s-upgrade:")} >= {
        "coredns/coredns:1.11.3",
        "docker.io/hetznercloud/hcloud-cloud-controller-manager:v1.35.0",
        "ghcr.io/loft-sh/vcluster-oss:0.20.0",
        "quay.io/jetstack/cert-manager-acmesolver:v1.21.1",
        "quay.io/jetstack/cert-manager-cainjector:v1.21.1",
        "quay.io/jetstack/cert-manager-controller:v1.21.1",
        "quay.io/jetstack/cert-manager-startupapicheck:v1.21.1",
        "quay.io/jetstack/cert-manager-webhook:v1.21.1",
        "rancher/kubectl:v1.30.3",
        "rancher/system-upgrade-controller:v0.20.1",
        "registry.k8s.io/kube-apiserver:v1.30.14",
        "registry.k8s.io/kube-controller-manager:v1.30.14",
    }
    assert [r for r in refs if r.startswith("rancher/k3s-upgrade:")] == sorted(
        {
            f"rancher/k3s-upgrade:{cfg_of(s).control_plane.k3s_version.replace('+', '-')}"
            for s in STACKS
        }
    )


def _containers(doc: Any) -> list[dict[str, Any]]:
    pod = doc["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_image_carries_its_tag_and_the_pinned_digest(
    stack: str, filled: list[str]
) -> None:
    expected = {ref: f"{ref}@{fake_digest(ref)}" for ref in filled}
    cfg = cfg_of(stack)
    releases = {r.spec.name: r for r in checks.render_releases(cfg)}
    # Helm's engine: the chart turns the values into these image strings.
    deployments = {
        o.name: o.doc for o in releases["cert-manager"].objects if o.kind == "Deployment"
    }
    controller = _containers(deployments["cert-manager"])[0]
    assert controller["image"] == expected["quay.io/jetstack/cert-manager-controller:v1.21.1"]
    solver = "quay.io/jetstack/cert-manager-acmesolver:v1.21.1"
    assert f"--acme-http01-solver-image={expected[solver]}" in controller["args"]
    assert (
        _containers(deployments["cert-manager-webhook"])[0]["image"]
        == (expected["quay.io/jetstack/cert-manager-webhook:v1.21.1"])
    )
    for name in [n for n in releases if n.endswith("-vcluster")]:
        vcluster = releases[name]
        (sts,) = [o.doc for o in vcluster.objects if o.kind == "StatefulSet"]
        images = {c["name"]: c["image"] for c in _containers(sts)}
        assert images["syncer"] == expected["ghcr.io/loft-sh/vcluster-oss:0.20.0"]
        assert images["vcluster-copy"] == expected["ghcr.io/loft-sh/vcluster-oss:0.20.0"]
        assert images["kube-apiserver"] == expected["registry.k8s.io/kube-apiserver:v1.30.14"]
        assert (
            images["kube-controller-manager"]
            == (expected["registry.k8s.io/kube-controller-manager:v1.30.14"])
        )
        (coredns,) = checks.coredns_pods(vcluster.objects)
        assert coredns.spec["containers"][0]["image"] == expected["coredns/coredns:1.11.3"]
    suc = {(o.kind, o.name): o.doc for o in releases["system-upgrade-controller"].objects}
    assert (
        _containers(suc[("Deployment", "system-upgrade-controller")])[0]["image"]
        == (expected["rancher/system-upgrade-controller:v0.20.1"])
    )
    env = suc[("ConfigMap", "default-controller-env")]["data"]
    assert env["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"] == expected["rancher/kubectl:v1.30.3"]
    # Every image of every release, Cilium's included, is now `<ref>:<tag>@sha256:<digest>`.
    for images in rendered_images(cfg).values():
        assert all(re.fullmatch(r"[^@]+:[^@/]+@sha256:[0-9a-f]{64}", i) for i in images), images


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_declares_the_pinned_images(stack: str, filled: list[str]) -> None:
    run = evaluate(stack)
    assert run.error is None, run.error
    version = cfg_of(stack).control_plane.k3s_version.replace("+", "-")
    upgrade = f"rancher/k3s-upgrade:{version}"
    plans = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in run.of_type(PLAN)}
    assert plans[SERVER_PLAN_NAME]["upgrade"]["image"] == f"{upgrade}@{fake_digest(upgrade)}"
    if stack == "secondary":
        agent = plans[AGENT_PLAN_NAME]
        assert agent["prepare"]["image"] == agent["upgrade"]["image"]
        assert agent["upgrade"]["image"] == f"{upgrade}@{fake_digest(upgrade)}"
    (group,) = run.of_type(CONFIG_GROUP)
    (deployment,) = [o for o in group.inputs["objs"] if o["kind"] == "Deployment"]
    ref = "rancher/system-upgrade-controller:v0.20.1"
    assert _containers(deployment)[0]["image"] == f"{ref}@{fake_digest(ref)}"
    values = {r.inputs["name"]: r.inputs["values"] for r in run.of_type(RELEASE)}
    ref = "quay.io/jetstack/cert-manager-controller:v1.21.1"
    assert values["cert-manager"]["image"] == {
        "repository": ref.rsplit(":", 1)[0],
        "tag": "v1.21.1",
        "digest": fake_digest(ref),
    }


def test_without_a_digest_the_plans_name_the_bare_image_as_before() -> None:
    # The controller then tags it with the Plan's version itself: a live region's Plans change
    # only once a digest is filled.
    run = evaluate("primary")
    (plan,) = [p for p in run.of_type(PLAN) if p.inputs["metadata"]["name"] == SERVER_PLAN_NAME]
    assert plan.inputs["spec"]["upgrade"]["image"] == "rancher/k3s-upgrade"


def plan_warnings(stack: str, tmp_path: Path) -> list[str]:
    from tools import plan

    out = io.StringIO()
    assert plan.main([stack, "--json", str(tmp_path / "p.json")], out, io.StringIO()) == 0
    return [line for line in out.getvalue().splitlines() if "WARNING: image " in line]


def test_the_plan_warns_exactly_about_the_images_still_without_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = plan_warnings("primary", tmp_path)
    assert before, "the committed data file fills nothing yet"
    filled = ["quay.io/jetstack/cert-manager-webhook:v1.21.1", "coredns/coredns:1.11.3"]
    data = write_digests(tmp_path / "image_digests.yaml", filled)
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", data)
    after = plan_warnings("primary", tmp_path)
    assert after == [w for w in before if not any(f"image {ref} (" in w for ref in filled)]
    assert len(before) - len(after) == 3  # the webhook once, CoreDNS in both vClusters


def test_a_malformed_data_file_is_refused_naming_every_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "image_digests.yaml"
    good = {"digest": "sha256:" + "a" * 64, "source": "https://registry.test/x", "checked": "x"}
    path.write_text(
        yaml.safe_dump(
            {
                "images": {
                    "quay.io/a/b:v1": {**good, "digest": "sha256:ABC"},
                    "quay.io/a/c:v1": {**good, "source": ""},
                    "quay.io/a/d@sha256:" + "b" * 64: good,
                    "quay.io/a/e": good,
                    "quay.io/a/f:v1": good,
                }
            }
        )
    )
    with pytest.raises(pins.PinError) as caught:
        pins.load_image_digests(path)
    assert str(caught.value).splitlines() == [
        "render/image_digests.yaml has 4 invalid entries (fill it with `python -m "
        "tools.resolve_pins image REF...`, never by hand):",
        "  - images.'quay.io/a/b:v1'.digest: 'sha256:ABC'; allowed: sha256: and 64 lower-case "
        "hex digits",
        "  - images.'quay.io/a/c:v1'.source: ''; allowed: the URL the digest was read from",
        f"  - images.'quay.io/a/d@sha256:{'b' * 64}': a reference with its tag and no digest, "
        "e.g. quay.io/org/app:v1.2.3",
        "  - images.'quay.io/a/e': a reference with its tag and no digest, e.g. "
        "quay.io/org/app:v1.2.3",
    ]


def test_up_stops_on_a_malformed_data_file_before_any_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "image_digests.yaml"
    path.write_text(
        "images:\n  quay.io/jetstack/cert-manager-controller:v1.21.1:\n"
        "    digest: sha256:123\n    source: x\n    checked: '2026-12-04'\n"
    )
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", path)
    run = evaluate("primary")
    assert isinstance(run.error, pins.PinError)
    assert "digest: 'sha256:123'; allowed: sha256: and 64 lower-case hex digits" in str(run.error)
    assert run.registrations == [], "refused before any resource is declared"


def test_the_mirror_keeps_every_digest(filled: list[str]) -> None:
    # The mirror rewrites where containerd pulls from (registries.yaml `rewrite` acts on the
    # repository name), never the reference in the objects: tag and digest arrive unchanged.
    run = evaluate("primary", {"registryMirror": {"enabled": True}})
    assert run.error is None, run.error
    cloud = yaml.safe_load(run.of_type(SERVER)[0].inputs["userData"])
    files = {f["path"]: f["content"] for f in cloud["write_files"]}
    mirrors = yaml.safe_load(files["/etc/rancher/k3s/registries.yaml"])["mirrors"]
    cfg = cfg_of("primary", {"registryMirror": {"enabled": True}})
    expected = {ref: f"{ref}@{fake_digest(ref)}" for ref in filled}
    for images in rendered_images(cfg).values():
        for image in images:
            registry, repository = pins.canonical(image).split(":")[0].split("/", 1)
            name, _, rest = image.partition("@")
            ((pattern, replacement),) = mirrors[registry]["rewrite"].items()
            pulled = re.sub(pattern, replacement.replace("$1", r"\1"), repository)
            assert pulled.startswith("proxy-")
            assert rest, f"{image} lost its digest with the mirror on"
            assert image in expected.values() or "quay.io/cilium/" in image
            assert name.rsplit(":", 1)[1]  # the tag stays beside the digest


def _without_images(value: object) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_images(v)
            for k, v in cast("dict[str, object]", value).items()
            if k != "image" and k not in ("apiServer", "controllerManager", "coredns")
        }
    return value


@pytest.mark.parametrize("release", ["cert-manager", "dmz-vcluster"])
def test_naming_the_images_in_the_values_renders_the_charts_own_defaults(release: str) -> None:
    # Without a digest the explicit repositories and tags change nothing: they are the chart's
    # defaults (render/cert_manager.py IMAGES, render/vcluster.py DISTRO_IMAGES). CoreDNS is left
    # out: without a value the chart leaves its image to the syncer at run time.
    from dataclasses import replace

    from render.helm import render_chart
    from render.pins import verified

    cfg = cfg_of("primary")
    (ours,) = [r for r in checks.render_releases(cfg) if r.spec.name == release]
    spec = ours.spec
    values = _without_images(dict(spec.values))
    if release == "dmz-vcluster":
        # The syncer's image is the stack's own value; only what this change names is dropped.
        values["controlPlane"]["statefulSet"] = spec.values["controlPlane"]["statefulSet"]
    objects = render_chart(
        verified(spec.chart.package), values, name=spec.name, namespace=spec.namespace
    )
    defaults = checks.RenderedRelease(replace(spec, values=values), objects)

    def named(release: checks.RenderedRelease) -> list[str]:
        return [i for i in checks.release_images(cfg, release) if not i.startswith("coredns/")]

    assert named(defaults) == named(ours)


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        mapping = cast("dict[str, object]", value)
        return set(mapping) | {k for v in mapping.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in cast("list[object]", value) for k in _keys(v)}
    return set()


@pytest.mark.parametrize("version", ["1.18.12", "1.19.6"])
def test_cilium_keeps_the_digests_its_chart_carries(version: str) -> None:
    # Cilium's values carry a digest beside every default image (`useDigest: true`); the program
    # never turns that off and never overrides an image, so its pins reach the nodes as they are.
    from render.cilium import cilium_values

    cfg = cfg_of("primary")
    cfg = cfg.model_copy(update={"cilium": cfg.cilium.model_copy(update={"version": version})})
    assert not _keys(cilium_values(cfg)) & {"useDigest", "digest", "image", "override"}
    (cilium,) = [r for r in checks.render_releases(cfg) if r.spec.name == "cilium"]
    images = checks.release_images(cfg, cilium)
    assert images
    assert all(re.fullmatch(r"quay\.io/cilium/[^@]+:[^@/]+@sha256:[0-9a-f]{64}", i) for i in images)


def test_a_chart_digest_that_the_data_contradicts_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = cfg_of("primary")
    (cilium,) = [r for r in checks.render_releases(cfg) if r.spec.name == "cilium"]
    agent = next(i for i in checks.release_images(cfg, cilium) if "/cilium:" in i)
    ref, _, chart_digest = agent.partition("@")
    data = tmp_path / "image_digests.yaml"
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", write_digests(data, [ref]))
    problems = checks.image_problems(cfg, [cilium])
    assert problems
    assert {p.value for p in problems} == {repr(agent)}
    assert f"records for {ref} ({fake_digest(ref)})" in problems[0].allowed
    # The same digest as the chart's agrees: nothing to say.
    table = {ref: {"digest": chart_digest, "source": "https://registry.test/", "checked": "x"}}
    data.write_text(yaml.safe_dump({"images": table}))
    assert checks.image_problems(cfg, [cilium]) == []
