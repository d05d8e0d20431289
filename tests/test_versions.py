"""Pinned k3s, Cilium, cert-manager and Gateway API versions are a combination each upstream supports."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
import yaml

from checks import versions
from checks.preflight import parse
from config.support import DATA_FILE, MATRIX, Line, minor
from tools.mockrun import evaluate, stack_config

TODAY = datetime.date(2026, 12, 4)


def refusal(overrides: dict[str, Any]) -> str:
    run = evaluate("primary", overrides)
    assert run.error is not None, "expected the stack to be refused"
    assert run.registrations == []
    return str(run.error)


def k3s(version: str) -> dict[str, Any]:
    return {"controlPlane": {"k3sVersion": version}}


def test_every_support_fact_carries_its_source_and_the_matrix_its_date() -> None:
    raw = yaml.safe_load(DATA_FILE.read_text())
    assert raw["checked"] == datetime.date(2026, 12, 4)
    assert "kubernetes.io/releases" in raw["kubernetes"]["source"]
    for project in ("cilium", "cert_manager"):
        for line in raw[project]["lines"].values():
            assert line["source"].startswith("https://")
    assert raw["gateway_api"]["source"]
    for release in raw["k3s"]["releases"].values():
        assert release["source"].startswith(
            f"https://github.com/k3s-io/k3s/releases/tag/{release['version']}"
        )
        assert minor(release["version"]) in raw["k3s"]["releases"]


def test_committed_stacks_pin_a_combination_every_upstream_supports() -> None:
    for stack in ("primary", "secondary"):
        cfg = parse(stack_config(stack), stack)
        assert versions.problems(cfg) == []
        assert versions.notices(cfg, TODAY) == [], "no end-of-support notice today"
        assert (cfg.control_plane.k3s_version, cfg.cilium.version) == ("v1.35.6+k3s1", "1.19.6")
        assert cfg.cilium.gateway_api_crds == "v1.4.0"
        kube = minor(cfg.control_plane.k3s_version)
        assert kube in MATRIX.cilium[minor(cfg.cilium.version) or ""].kubernetes
        assert kube in MATRIX.cert_manager[minor(cfg.cert_manager.version) or ""].kubernetes


def test_todays_former_default_is_refused_naming_both_versions() -> None:
    message = refusal(k3s("v1.31.4+k3s1"))
    assert (
        "sovereign:controlPlane.k3sVersion = 'v1.31.4+k3s1': k3s v1.31.4+k3s1 is Kubernetes "
        "1.31, which cert-manager v1.21.1 does not support (cert-manager 1.21 supports "
        "Kubernetes 1.33-1.36" in message
    )
    assert "Cilium 1.19.6 does not support" in message, "Cilium 1.19 lists 1.32-1.35"


def test_kubernetes_newer_than_the_cilium_line_is_refused() -> None:
    message = refusal(k3s("v1.36.2+k3s1"))
    assert (
        "k3s v1.36.2+k3s1 is Kubernetes 1.36, which Cilium 1.19.6 does not support (Cilium "
        "1.19 supports Kubernetes 1.32-1.35" in message
    )
    assert "cert-manager v1.21.1 does not support" not in message
    both = refusal(k3s("v1.37.2+k3s1"))
    assert "which Cilium 1.19.6 does not support" in both
    assert "which cert-manager v1.21.1 does not support" in both
    older = refusal({**k3s("v1.35.6+k3s1"), "cilium": {"version": "1.18.12"}})
    assert (
        "which Cilium 1.18.12 does not support (Cilium 1.18 supports Kubernetes 1.30-1.33" in older
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (k3s("v1.29.9+k3s1"), "Kubernetes 1.29 has no support data (known minors: 1.30,"),
        ({"cilium": {"version": "1.20.0"}}, "sovereign:cilium.version = '1.20.0': no Cilium"),
        (
            {"certManager": {"version": "v1.22.0"}},
            "sovereign:certManager.version = 'v1.22.0': no cert-manager support data",
        ),
    ],
)
def test_versions_without_support_data_are_refused(
    overrides: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(overrides)


def test_a_pin_without_a_vendored_chart_is_refused_naming_the_vendored_ones() -> None:
    message = refusal({"cilium": {"version": "1.19.7"}})
    assert (
        "sovereign:cilium.version = '1.19.7': a version whose chart package is vendored in "
        "render/charts/ (cilium-1.18.12, cilium-1.19.6)" in message
    )


def test_gateway_api_crds_must_be_the_ones_the_cilium_line_supports() -> None:
    message = refusal({"cilium": {"gatewayApi": {"enabled": True, "crdsVersion": "v1.3.0"}}})
    assert (
        "sovereign:cilium.gatewayApi.crdsVersion = 'v1.3.0': Cilium 1.19.6 supports Gateway "
        "API v1.4.0, not v1.3.0" in message
    )
    ok = evaluate("primary", {"cilium": {"gatewayApi": {"enabled": True}}})
    assert ok.error is None, ok.error


def test_the_gateway_api_crds_follow_the_cilium_line_unless_pinned() -> None:
    for version, crds in (("1.19.6", "v1.4.0"), ("1.18.12", "v1.3.0")):
        raw = dict(stack_config("primary"))
        raw["controlPlane"] = {
            **raw["controlPlane"],
            "k3sVersion": "v1.33.13+k3s2",
        }
        raw["cilium"] = {"version": version}
        assert parse(raw, "primary").cilium.gateway_api_crds == crds


def running_region() -> dict[str, Any]:
    """A region as deployed before this change: Kubernetes 1.33 with Cilium 1.18."""
    raw = dict(stack_config("primary"))
    raw["controlPlane"] = {**raw["controlPlane"], "k3sVersion": "v1.33.13+k3s2"}
    raw["cilium"] = {"version": "1.18.12"}
    return raw


def test_end_of_upstream_support_is_reported_with_its_date_and_the_dilemma() -> None:
    cfg = parse(running_region(), "primary")
    (notice,) = versions.notices(cfg, TODAY)
    assert "Kubernetes 1.33 (k3s v1.33.13+k3s2) reached the end of upstream support on " in notice
    assert "2026-06-28" in notice
    assert (
        "No minor maintained upstream today (1.35, 1.36, 1.37) is supported by Cilium 1.18.12"
        in notice
    )
    assert versions.notices(cfg, datetime.date(2026, 6, 28)) == []


def test_the_next_expiry_warns_too() -> None:
    cfg = parse(stack_config("primary"), "primary")
    assert versions.notices(cfg, datetime.date(2027, 2, 28)) == []
    (notice,) = versions.notices(cfg, datetime.date(2027, 3, 1))
    assert (
        "Kubernetes 1.35 (k3s v1.35.6+k3s1) reached the end of upstream support on 2027-02-28"
        in notice
    )


def test_the_program_warns_about_end_of_support_on_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pulumi

    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_a, **_k: warned.append(message))
    run = evaluate("primary", {**k3s("v1.33.13+k3s2"), "cilium": {"version": "1.18.12"}})
    assert run.error is None, run.error
    assert any("reached the end of upstream support on 2026-06-28" in w for w in warned)


def _with_versions(k3s_version: str, cilium_version: str) -> Any:
    cfg = parse(stack_config("primary"), "primary")
    cilium = cfg.cilium.model_copy(
        update={
            "version": cilium_version,
            "gateway_api": cfg.cilium.gateway_api.model_copy(update={"enabled": False}),
        }
    )
    plane = cfg.control_plane.model_copy(update={"k3s_version": k3s_version})
    return cfg.model_copy(update={"cilium": cilium, "control_plane": plane})


def _cilium_table() -> list[tuple[str, str, bool]]:
    """(Cilium line, Kubernetes minor, supported) for every line of the support matrix data: each
    minor the line lists, and the minors just outside its range."""
    rows: list[tuple[str, str, bool]] = []
    for line, spec in MATRIX.cilium.items():
        listed = [tuple(int(p) for p in m.split(".")) for m in spec.kubernetes]
        below = f"{listed[0][0]}.{listed[0][1] - 1}"
        above = f"{listed[-1][0]}.{listed[-1][1] + 1}"
        rows += [(line, m, True) for m in spec.kubernetes]
        rows += [(line, below, False), (line, above, False)]
    return rows


@pytest.mark.parametrize(("line", "kube", "supported"), _cilium_table())
def test_the_cilium_range_decides_over_the_support_matrix(
    line: str, kube: str, supported: bool
) -> None:
    # Everything but the Cilium pair accepts the minor: cert-manager lines list it, and it has
    # an end-of-life entry. Only the Cilium decision can refuse.
    every = sorted(
        {*MATRIX.kubernetes_eol, kube, *(m for s in MATRIX.cilium.values() for m in s.kubernetes)}
    )
    matrix = dataclasses.replace(
        MATRIX,
        kubernetes_eol={m: datetime.date(2030, 1, 1) for m in every},
        cert_manager={
            name: dataclasses.replace(spec, kubernetes=tuple(every))
            for name, spec in MATRIX.cert_manager.items()
        },
        hcloud_ccm=_widened(MATRIX.hcloud_ccm, every),
        hcloud_csi=_widened(MATRIX.hcloud_csi, every),
    )
    cfg = _with_versions(f"v{kube}.1+k3s1", f"{line}.0")
    refused = [p for p in versions.problems(cfg, matrix) if p.path == versions.K3S_KEY]
    assert (refused == []) is supported, refused


def _widened(lines: dict[str, Line], minors: list[str]) -> dict[str, Line]:
    return {
        name: dataclasses.replace(spec, kubernetes=tuple(minors)) for name, spec in lines.items()
    }


@pytest.mark.parametrize(
    ("kube", "refused_by"),
    [
        ("1.32", ["Hetzner CCM", "Hetzner CSI driver"]),
        ("1.33", []),
        ("1.36", []),
        ("1.37", ["Hetzner CCM", "Hetzner CSI driver"]),
    ],
)
def test_the_hetzner_ccm_and_csi_ranges_decide_too(kube: str, refused_by: list[str]) -> None:
    # Cilium, cert-manager and the end-of-life data accept every minor here: only the Hetzner
    # charts' ranges (1.33-1.36) can refuse.
    every = sorted({*MATRIX.kubernetes_eol, "1.32", "1.37"})
    matrix = dataclasses.replace(
        MATRIX,
        kubernetes_eol={m: datetime.date(2030, 1, 1) for m in every},
        cilium=_widened(MATRIX.cilium, every),
        cert_manager=_widened(MATRIX.cert_manager, every),
    )
    cfg = _with_versions(f"v{kube}.1+k3s1", "1.19.6")
    refused = [p.allowed for p in versions.problems(cfg, matrix) if p.path == versions.K3S_KEY]
    assert len(refused) == len(refused_by), refused
    for project, message in zip(refused_by, refused, strict=True):
        assert f"which {project} " in message
        assert "supports Kubernetes 1.33-1.36" in message
        assert "render/hcloud.py" in message
    # A region on k3s's own controller runs no CCM: only the CSI range applies.
    builtin = _with_versions(f"v{kube}.1+k3s1", "1.19.6").model_copy(
        update={"cloud_controller": "k3s"}
    )
    assert len(
        [p for p in versions.problems(builtin, matrix) if p.path == versions.K3S_KEY]
    ) == len([p for p in refused_by if "CSI" in p])
