"""The vendored chart packages and schemas are exactly the bytes their provenance names."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from render import pins
from render.charts import VENDOR_DIR
from render.pins import UPSTREAM_DIR
from render.slots import SLOTS
from tools import vendor
from tools.mockrun import stack_config


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    assert vendor.verify() == []
    assert len(vendor.manifest()) == 12
    assert len(vendor.manifest(UPSTREAM_DIR)) == 19


def test_a_changed_vendored_file_is_refused_before_use_with_both_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "upstream"
    shutil.copytree(UPSTREAM_DIR, copy)
    monkeypatch.setattr(pins, "VENDOR_DIRS", (copy,))
    crd = copy / "system-upgrade-controller-v0.20.1" / "upgrade.cattle.io_plans.yaml"
    assert pins.verified(crd) == crd
    pinned = pins.sha256(crd)
    crd.write_text(crd.read_text() + "# edited\n")
    with pytest.raises(pins.PinError) as err:
        pins.verified(crd)
    message = str(err.value)
    assert message.startswith(
        f"upstream/system-upgrade-controller-v0.20.1/upgrade.cattle.io_plans.yaml: sha256 "
        f"{pins.sha256(crd)} but upstream/vendor.yaml pins {pinned}"
    )
    assert "restore it (git checkout) or re-vendor it" in message
    (copy / "stray.yaml").write_text("x: 1\n")
    with pytest.raises(pins.PinError, match=r"^stray.yaml: not listed in upstream/vendor.yaml"):
        pins.verified(copy / "stray.yaml")
    with pytest.raises(pins.PinError, match=r"^upstream/gone.yaml is not vendored"):
        pins.verified(copy / "gone.yaml")


def test_verify_sees_a_changed_byte_and_an_unlisted_file(tmp_path: Path) -> None:
    copy = tmp_path / "charts"
    shutil.copytree(VENDOR_DIR, copy)
    data = bytearray((copy / "vcluster-0.20.0.tgz").read_bytes())
    data[-1] ^= 1
    (copy / "vcluster-0.20.0.tgz").write_bytes(bytes(data))
    (copy / "stray.tgz").write_bytes(b"x")
    problems = vendor.verify(copy)
    assert any(p.startswith("vcluster-0.20.0.tgz: sha256 ") for p in problems)
    assert "stray.tgz: not listed in vendor.yaml (no provenance)" in problems


def test_refresh_copies_from_refs_and_records_the_sha256(tmp_path: Path) -> None:
    copy = tmp_path / "charts"
    shutil.copytree(VENDOR_DIR, copy)
    refs = tmp_path / "refs"
    (refs / "charts").mkdir(parents=True)
    (refs / "charts" / "cilium-9.9.9.tgz").write_bytes(b"new chart")
    rows = vendor.refresh(["charts/cilium-9.9.9.tgz"], refs, copy)
    entry = vendor.manifest(copy)["cilium-9.9.9.tgz"]
    assert entry["sha256"] == vendor.sha256(copy / "cilium-9.9.9.tgz")
    assert entry["refs"] == "charts/cilium-9.9.9.tgz"
    assert entry["sha256"] in rows[0]
    # Until SOURCES.md carries its provenance the new file does not verify.
    assert vendor.verify(copy) == [
        "cilium-9.9.9.tgz: its sha256 is not in SOURCES.md (provenance missing)"
    ]


def test_every_chart_the_committed_stacks_pin_is_vendored() -> None:
    from checks.preflight import parse
    from render.releases import releases

    for stack in ("primary", "secondary"):
        cfg = parse(stack_config(stack), stack)
        for release in releases(cfg):
            assert release.chart.package.is_file(), release.chart
            # Vendored beside the package where upstream ships one (the CCM chart has none).
            with tarfile.open(release.chart.package) as package:
                shipped = any(n.endswith("/values.schema.json") for n in package.getnames())
            assert release.chart.values_schema.is_file() == shipped, release.chart
    assert {slot.release for slot in SLOTS} >= {"cilium", "cert-manager"}


def test_the_applied_manifests_are_parsed_from_verified_bytes_never_from_a_stored_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An edited or stale entry in the on-disk cache must not change what `up` applies: the
    # upgrade controller's objects (components/system_upgrade.py declares exactly these) come
    # from the vendored bytes whose sha256 matched, whatever the cache directory holds.
    from render import manifest_files
    from render.cache import key
    from render.system_upgrade import controller_objects, release

    monkeypatch.setenv("SOVEREIGN_CACHE_DIR", str(tmp_path / "cache"))
    manifest_files._parsed.clear()  # pyright: ignore[reportPrivateUsage]
    expected = controller_objects()
    sources = sorted(p for p in release().sources.rglob("*.yaml"))
    evil = [
        {
            "kind": "Deployment",
            "metadata": {"name": "x"},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "image": "evil.example/controller:v6"}]}
                }
            },
        }
    ]
    # Whatever an earlier run stored, and an entry where a content-keyed parse would be looked up.
    stored = list((tmp_path / "cache").rglob("*.json"))
    for path in sources:
        stored.append(
            tmp_path / "cache" / "manifest" / f"{key('manifest', 1, pins.sha256(path))}.json"
        )
    for path in stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(evil))
    manifest_files._parsed.clear()  # pyright: ignore[reportPrivateUsage]
    objects = controller_objects()
    assert objects == expected
    images = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images == ["rancher/system-upgrade-controller:v0.20.1"]


def test_a_manifest_changed_after_vendoring_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from render import manifest_files

    copy = tmp_path / "upstream"
    shutil.copytree(UPSTREAM_DIR, copy)
    monkeypatch.setattr(pins, "VENDOR_DIRS", (copy,))
    kustomization = copy / "system-upgrade-controller-v0.20.1" / "kustomization.yaml"
    assert manifest_files.documents(kustomization)[0]["namespace"] == "system-upgrade"
    kustomization.write_text(kustomization.read_text().replace("system-upgrade", "kube-system"))
    with pytest.raises(pins.PinError, match=r"kustomization.yaml: sha256 [0-9a-f]{64} but"):
        manifest_files.documents(kustomization)
