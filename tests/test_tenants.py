"""Fenced tenants: rootless vClusters that keep their mode, quotas that fit, egress by table."""

from __future__ import annotations

from typing import Any

from tools.mockrun import Run, evaluate

SERVER = "hcloud:index/server:Server"
RELEASE = "kubernetes:helm.sh/v3:Release"


def live_primary(**modes: str) -> list[dict[str, Any]]:
    """Hetzner's answer for the deployed primary; `modes`: the vCluster labels its server has."""
    labels = {"openova.io/k3s-version": "v1.33.13-k3s2", "openova.io/k3s-boot": "init"}
    labels.update({f"openova.io/vcluster-{name}": value for name, value in modes.items()})
    return [{"name": "omantel-fsn1-cp-1", "labels": labels, "deleteProtection": True}]


def values(run: Run, release: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == release).inputs["values"]


# --- rootless -------------------------------------------------------------------------------


def test_a_new_region_runs_its_vclusters_rootless_and_records_it(primary: Run) -> None:
    for release in ("mgmt-vcluster", "dmz-vcluster"):
        security = values(primary, release)["controlPlane"]["statefulSet"]["security"]
        assert security["podSecurityContext"]["fsGroup"] == 12345
        assert security["containerSecurityContext"]["runAsNonRoot"] is True
        assert security["containerSecurityContext"]["runAsUser"] == 12345
    (server,) = primary.of_type(SERVER)
    labels = server.inputs["labels"]
    assert labels["openova.io/vcluster-mgmt"] == "rootless"
    assert labels["openova.io/vcluster-dmz"] == "rootless"
    assert labels["openova.io/vcluster-rtz"] == "none"


def test_root_mode_is_recorded_and_keeps_the_charts_own_pod() -> None:
    run = evaluate(
        "primary",
        {"vclusters": {"dmz": {"rootless": False, "podSecurity": {"enforce": "baseline"}}}},
    )
    assert run.error is None, run.error
    (server,) = run.of_type(SERVER)
    assert server.inputs["labels"]["openova.io/vcluster-dmz"] == "root"
    security = values(run, "dmz-vcluster")["controlPlane"]["statefulSet"]["security"]
    assert security == {"podSecurityContext": {}}, "rootless off: the chart's pod, as before"


def test_a_live_root_vcluster_cannot_be_switched_to_rootless() -> None:
    # A region created before rootless became the default: its server has no mode labels.
    run = evaluate("primary", live_servers=live_primary())
    assert run.registrations == [], "refused before anything is declared"
    message = str(run.error)
    assert (
        "sovereign:vclusters.mgmt.rootless = true: the MGMT vCluster of this live region runs "
        "as root (server omantel-fsn1-cp-1 has no openova.io/vcluster-mgmt label"
    ) in message
    assert "sovereign:vclusters.dmz.rootless = true" in message
    assert (
        "rootless: false with podSecurity.enforce 'baseline', or recreate the vCluster" in message
    )
    # Keeping the live mode is accepted.
    keep = evaluate(
        "primary",
        {
            "vclusters": {
                name: {"rootless": False, "podSecurity": {"enforce": "baseline"}}
                for name in ("mgmt", "dmz")
            }
        },
        live_servers=live_primary(),
    )
    assert keep.error is None, keep.error


def test_a_live_rootless_vcluster_cannot_be_switched_to_root() -> None:
    run = evaluate(
        "primary",
        {"vclusters": {"dmz": {"rootless": False, "podSecurity": {"enforce": "baseline"}}}},
        live_servers=live_primary(mgmt="rootless", dmz="rootless", rtz="none"),
    )
    assert run.registrations == []
    message = str(run.error)
    assert (
        "sovereign:vclusters.dmz.rootless = false: the DMZ vCluster of this live region runs "
        "as rootless (server omantel-fsn1-cp-1 records openova.io/vcluster-dmz=rootless"
    ) in message
    assert "Set sovereign:vclusters.dmz.rootless: true, or recreate the vCluster" in message
    assert "sovereign:vclusters.mgmt" not in message


def test_a_vcluster_never_deployed_may_start_in_either_mode() -> None:
    run = evaluate("primary", live_servers=live_primary(mgmt="none", dmz="rootless", rtz="none"))
    assert run.error is None, run.error
