"""A running region reaches a supported Kubernetes one minor at a time, inside the matrix."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from checks.preflight import parse
from checks.upgrades import (
    LEGACY_CILIUM,
    NoPathError,
    Running,
    first_cilium_line,
    path,
    running_of,
    step_problems,
)
from config.support import MATRIX, minor_key
from render.charts import VENDOR_DIR
from render.cilium import upgrade_compatibility
from render.naming import CLOUD_CONTROLLER_LABEL_KEY
from tools.mockrun import ROOT, evaluate, stack_config
from tools.upgrade_path import main

# Regions deployed before issue 15 run Kubernetes 1.33 with Cilium 1.18.
OLD = Running("v1.33.13+k3s2", "1.18.12")


def live(
    k3s: str, cilium: str | None, count: int = 3, first: str | None = None
) -> list[dict[str, Any]]:
    labels: dict[str, str] = {
        "openova.io/k3s-version": k3s.replace("+", "-"),
        # The vClusters as they run now (rootless, checks/tenants.py), not what this is about.
        "openova.io/vcluster-dmz": "rootless",
        "openova.io/vcluster-rtz": "rootless",
        # Not what this is about either: the controller and the data class the committed stacks
        # ask for.
        CLOUD_CONTROLLER_LABEL_KEY: "hetzner",
        "openova.io/vcluster-dmz-storage": "hcloud-volumes",
        "openova.io/vcluster-rtz-storage": "hcloud-volumes",
    }
    if cilium is not None:
        labels["openova.io/cilium-version"] = cilium
    if first is not None:
        labels["openova.io/cilium-first"] = first
    return [
        {
            "name": f"omantel-hel1-2-cp-{n}",
            "labels": {**labels, "openova.io/k3s-boot": "init" if n == 1 else "join"},
            "deleteProtection": True,
        }
        for n in range(1, count + 1)
    ]


def test_the_path_from_cilium_118_on_133_is_cilium_first_then_one_minor_at_a_time() -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    steps = path(cfg, OLD, "v1.35.6+k3s1")
    assert [step.render() for step in steps] == [
        "sovereign:cilium.version: 1.19.6",
        "sovereign:controlPlane.k3sVersion: v1.34.9+k3s1",
        "sovereign:controlPlane.k3sVersion: v1.35.6+k3s1",
    ]
    assert [(s.k3s, s.cilium) for s in steps][-1] == ("v1.35.6+k3s1", "1.19.6")
    assert path(cfg, Running("v1.35.6+k3s1", "1.19.6"), "v1.35.6+k3s1") == []
    with pytest.raises(NoPathError, match="cannot go back"):
        path(cfg, Running("v1.35.6+k3s1", "1.19.6"), "v1.34.9+k3s1")
    with pytest.raises(NoPathError, match=r"to Kubernetes 1\.36"):
        path(cfg, OLD, "v1.36.2+k3s1")


def test_a_region_without_the_cilium_label_runs_the_legacy_line() -> None:
    assert running_of({"cp-1": "v1.33.13+k3s2"}, {}) == OLD
    assert LEGACY_CILIUM == "1.18.12"
    assert running_of({}, {}) is None
    # Half-way through a Plan the oldest server decides.
    assert running_of({"a": "v1.34.9+k3s1", "b": "v1.33.13+k3s2"}, {"a": "1.19.6"}) == Running(
        "v1.33.13+k3s2", "1.19.6"
    )


def test_a_jump_that_skips_a_minor_is_refused_at_preview_naming_the_next_step() -> None:
    run = evaluate("secondary", live_servers=live("v1.33.13+k3s2", None))
    assert run.registrations == []
    message = str(run.error)
    assert (
        "sovereign:controlPlane.k3sVersion = 'v1.35.6+k3s1': the region runs k3s v1.33.13+k3s2 "
        "with Cilium 1.18.12 (Hetzner labels); one `up` moves one minor of one of them, inside "
        "the support matrix, so this is 3 steps away. Next allowed step: "
        "sovereign:cilium.version: 1.19.6" in message
    )


@pytest.mark.parametrize(
    ("running", "overrides", "key", "next_step"),
    [
        # Both minors at once: Cilium goes first.
        (
            ("v1.33.13+k3s2", "1.18.12"),
            {"controlPlane": {"k3sVersion": "v1.34.9+k3s1"}},
            "sovereign:controlPlane.k3sVersion = 'v1.34.9+k3s1'",
            "sovereign:cilium.version: 1.19.6",
        ),
        # Kubernetes skipping 1.34.
        (
            ("v1.33.13+k3s2", "1.19.6"),
            {},
            "sovereign:controlPlane.k3sVersion = 'v1.35.6+k3s1'",
            "sovereign:controlPlane.k3sVersion: v1.34.9+k3s1",
        ),
    ],
)
def test_each_refusal_names_the_key_the_versions_and_the_next_step(
    running: tuple[str, str], overrides: dict[str, Any], key: str, next_step: str
) -> None:
    run = evaluate("secondary", overrides, live_servers=live(*running))
    message = str(run.error)
    assert key in message
    assert f"the region runs k3s {running[0]} with Cilium {running[1]}" in message
    assert f"Next allowed step: {next_step} " in message


@pytest.mark.parametrize(
    ("running", "overrides"),
    [
        (("v1.33.13+k3s2", None), {"controlPlane": {"k3sVersion": "v1.33.13+k3s2"}}),
        (("v1.33.13+k3s2", "1.19.6"), {"controlPlane": {"k3sVersion": "v1.34.9+k3s1"}}),
        (("v1.34.9+k3s1", "1.19.6"), {}),
        (("v1.35.6+k3s1", "1.19.6"), {}),
    ],
)
def test_every_step_of_the_path_is_accepted(
    running: tuple[str, str | None], overrides: dict[str, Any]
) -> None:
    run = evaluate("secondary", overrides, live_servers=live(*running))
    assert run.error is None, run.error
    assert record(run).inputs["labels"]["openova.io/cilium-version"] == "1.19.6"


def test_step_problems_leave_a_new_region_and_a_patch_alone() -> None:
    cfg = parse(stack_config("primary"), "primary")
    assert step_problems(cfg, None) == []
    assert step_problems(cfg, Running("v1.35.5+k3s1", "1.19.6")) == []


def test_upgrade_path_prints_the_steps_from_the_committed_config(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.primary.yaml").read_text()
    old = text.replace("k3sVersion: v1.35.6+k3s1", "k3sVersion: v1.33.13+k3s2").replace(
        "config:\n", 'config:\n  sovereign:cilium:\n    version: "1.18.12"\n', 1
    )
    (tmp_path / "Pulumi.primary.yaml").write_text(old)
    out = io.StringIO()
    code = main(["primary", "--dir", str(tmp_path), "--to", "v1.35.6+k3s1"], out=out)
    assert code == 0, out.getvalue()
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("notice: ")]
    assert lines[2:] == [
        "  1. sovereign:cilium.version: 1.19.6  (then: k3s v1.33.13+k3s2, Cilium 1.19.6)",
        "  2. sovereign:controlPlane.k3sVersion: v1.34.9+k3s1  (then: k3s v1.34.9+k3s1, Cilium 1.19.6)",
        "  3. sovereign:controlPlane.k3sVersion: v1.35.6+k3s1  (then: k3s v1.35.6+k3s1, Cilium 1.19.6)",
    ]
    assert "\n".join(lines).startswith(
        "primary runs k3s v1.33.13+k3s2 with Cilium 1.18.12 (Pulumi.primary.yaml); target k3s "
        "v1.35.6+k3s1.\n3 step(s), one `pulumi up` each"
    )
    done = io.StringIO()
    assert main(["primary"], out=done) == 0
    assert "Nothing to change" in done.getvalue()


def control_plane(run: Any) -> list[Any]:
    servers = run.of_type("hcloud:index/server:Server")
    return [s for s in servers if "-cp-" in s.inputs["name"]]


def cilium_release(run: Any) -> Any:
    return next(
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "cilium"
    )


def test_the_step_off_a_regions_first_cilium_line_sets_upgrade_compatibility_to_it() -> None:
    # A region deployed before the Cilium label runs 1.18: its step to 1.19 keeps 1.18's defaults.
    run = evaluate(
        "secondary",
        {"controlPlane": {"k3sVersion": "v1.33.13+k3s2"}},
        live_servers=live("v1.33.13+k3s2", None),
    )
    assert run.error is None, run.error
    values = cilium_release(run).inputs["values"]
    assert values["upgradeCompatibility"] == "1.18"
    for server in control_plane(run):
        assert server.inputs["labels"]["openova.io/cilium-first"] == "1.18"
    schema = json.loads((VENDOR_DIR / "cilium-1.19.6.values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


def test_upgrade_compatibility_stays_the_first_line_on_every_later_up() -> None:
    # Cilium: "set to the initial Cilium version which was installed in this cluster"; dropping
    # it the `up` after the step would move the ConfigMap to the newer line's defaults.
    run = evaluate("secondary", live_servers=live("v1.35.6+k3s1", "1.19.6", first="1.18"))
    assert run.error is None, run.error
    assert cilium_release(run).inputs["values"]["upgradeCompatibility"] == "1.18"
    for server in control_plane(run):
        assert server.inputs["labels"]["openova.io/cilium-first"] == "1.18"


@pytest.mark.parametrize("live_servers", [None, live("v1.35.6+k3s1", "1.19.6", first="1.19")])
def test_a_region_on_its_first_cilium_line_sets_no_upgrade_compatibility(
    live_servers: list[dict[str, Any]] | None,
) -> None:
    run = evaluate("secondary", live_servers=live_servers)
    assert run.error is None, run.error
    assert "upgradeCompatibility" not in cilium_release(run).inputs["values"]
    for server in control_plane(run):
        assert server.inputs["labels"]["openova.io/cilium-first"] == "1.19"


def test_the_first_line_is_the_oldest_recorded_else_the_running_else_the_configured() -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    assert first_cilium_line(cfg, {"a": "1.19", "b": "1.18"}, None) == "1.18"
    assert first_cilium_line(cfg, {}, OLD) == "1.18"
    assert first_cilium_line(cfg, {}, None) == "1.19"
    assert upgrade_compatibility(cfg, "1.18") == "1.18"
    assert upgrade_compatibility(cfg, "1.19") is None
    assert upgrade_compatibility(cfg, None) is None


RECORD = "hcloud:index/placementGroup:PlacementGroup"


def record(run: Any) -> Any:
    return run.one(RECORD, "omantel-hel1-2-region-record")


def test_the_running_cilium_is_recorded_only_after_its_release_succeeded(secondary: Any) -> None:
    group = record(secondary)
    release = cilium_release(secondary)
    # Declared after the release, its label an output of the release: a failed release (atomic,
    # rolled back) never reaches Hetzner, so the next preview still reads the previous version.
    assert release.urn in group.dependencies
    assert group.inputs["labels"]["openova.io/cilium-version"] == release.inputs["version"]
    assert group.inputs["labels"]["catalyst.openova.io/role"] == "record"
    assert (group.inputs["name"], group.inputs["type"]) == ("omantel-hel1-2-record", "spread")
    # No server records what was only asked for: every server is written before any release.
    for server in secondary.of_type("hcloud:index/server:Server"):
        assert "openova.io/cilium-version" not in server.inputs["labels"]


def test_preflight_reads_the_running_cilium_from_the_record_before_the_servers() -> None:
    # An earlier version labelled the servers 1.19.6 before a release that then failed: the
    # region still runs 1.18.12, as its record says, so k3s 1.34 with Cilium 1.19 is two steps.
    over = {"controlPlane": {"k3sVersion": "v1.34.9+k3s1"}}
    servers = live("v1.33.13+k3s2", "1.19.6")
    refused = evaluate(
        "secondary",
        over,
        live_servers=servers,
        live_record={"openova.io/cilium-version": "1.18.12"},
    )
    assert refused.registrations == []
    assert "the region runs k3s v1.33.13+k3s2 with Cilium 1.18.12" in str(refused.error)
    assert "Next allowed step: sovereign:cilium.version: 1.19.6" in str(refused.error)
    # Without a record (a region deployed before it), the servers' label is all there is.
    assert evaluate("secondary", over, live_servers=servers).error is None


def older_file(tmp_path: Path, cilium: str | None = None) -> Path:
    """The committed primary as a region on k3s 1.33 would have it, without a Cilium pin
    (files written before the key existed) unless `cilium` is given."""
    text = (ROOT / "Pulumi.primary.yaml").read_text()
    text = text.replace("k3sVersion: v1.35.6+k3s1", "k3sVersion: v1.33.13+k3s2")
    if cilium is not None:
        text = text.replace(
            "config:\n", f'config:\n  sovereign:cilium:\n    version: "{cilium}"\n', 1
        )
    (tmp_path / "Pulumi.primary.yaml").write_text(text)
    return tmp_path


def test_upgrade_path_assumes_the_legacy_cilium_where_the_file_pins_none(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["primary", "--dir", str(older_file(tmp_path))], out=out) == 0
    text = out.getvalue()
    assert (
        f"primary runs k3s v1.33.13+k3s2 with Cilium {LEGACY_CILIUM} (assumed: "
        "Pulumi.primary.yaml sets no sovereign:cilium.version" in text
    )
    assert "  1. sovereign:cilium.version: 1.19.6  (then: k3s v1.33.13+k3s2" in text
    # The notice judges what runs: Cilium 1.18 supports no maintained minor.
    assert "reached the end of upstream support on 2026-06-28" in text
    said = io.StringIO()
    code = main(["primary", "--dir", str(tmp_path), "--running-cilium", "1.19.6"], out=said)
    assert code == 0
    assert "with Cilium 1.19.6 (Pulumi.primary.yaml)" in said.getvalue()
    assert "sovereign:cilium.version" not in said.getvalue()  # no Cilium step
    # A file on a minor the legacy line never ran is not assumed to run it.
    committed = io.StringIO()
    assert main(["primary"], out=committed) == 0
    assert "assumed" not in committed.getvalue()
    assert "with Cilium 1.19.6" in committed.getvalue()


def test_upgrade_path_without_to_aims_at_the_newest_supported_release(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["primary", "--dir", str(older_file(tmp_path, "1.19.6"))], out=out) == 0
    text = out.getvalue()
    newest = MATRIX.k3s[max(MATRIX.k3s, key=minor_key)].version
    assert f"target k3s {newest} (the newest release of the support matrix reachable)" in text
    assert text.startswith(
        "notice: Kubernetes 1.33 (k3s v1.33.13+k3s2) reached the end of upstream support"
    )
    assert text.rstrip().endswith(
        f"sovereign:controlPlane.k3sVersion: {newest}  (then: k3s {newest}, Cilium 1.19.6)"
    )


def test_upgrade_path_refuses_an_unknown_stack_and_a_bad_version_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["nosuch"], out=out, err=err) == 2
    assert "./sovereign upgrade-path: cannot read Pulumi.nosuch.yaml" in err.getvalue()
    assert out.getvalue() == ""
    for bad in (["primary", "--to", "1.35"], ["primary", "--cilium", "1.19"]):
        with pytest.raises(SystemExit) as exit_:
            main(bad, out=out, err=err)
        assert exit_.value.code == 2
    assert "argument --to: '1.35': an exact k3s release, e.g. v1." in capsys.readouterr().err


def test_upgrade_path_help_keeps_its_layout() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.upgrade_path", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "\n    ./sovereign upgrade-path STACK [--to K3S_VERSION]" in proc.stdout
    assert "--running-cilium" in proc.stdout
