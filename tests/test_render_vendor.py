"""The vendored chart packages and schemas are exactly the bytes their provenance names."""

from __future__ import annotations

import shutil
from pathlib import Path

from render.charts import VENDOR_DIR
from render.slots import SLOTS
from tools import vendor
from tools.mockrun import stack_config


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    assert vendor.verify() == []
    assert len(vendor.manifest()) == 6


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
            assert release.chart.values_schema.is_file(), release.chart
    assert {slot.release for slot in SLOTS} >= {"cilium", "cert-manager"}
