"""Fenced tenants: rootless vClusters that keep their mode, quotas that fit, egress by table."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from checks.preflight import parse
from checks.rendered import render_releases
from checks.tenants import pod_usage, quota_fit_problems, vcluster_usage
from config.models import ContainerLimits
from config.quantity import parse as parse_quantity
from render.naming import CLOUD_CONTROLLER_LABEL_KEY
from render.tenants import quota_hard
from tools.mockrun import Registration, Run, evaluate, stack_config

SERVER = "hcloud:index/server:Server"
RELEASE = "kubernetes:helm.sh/v3:Release"


def live_primary(**modes: str) -> list[dict[str, Any]]:
    """Hetzner's answer for the deployed primary; `modes`: the vCluster labels its server has."""
    labels = {
        "openova.io/k3s-version": "v1.35.6-k3s1",
        "openova.io/k3s-boot": "init",
        CLOUD_CONTROLLER_LABEL_KEY: "hetzner",
        # Not what these tests are about: the data class the committed stacks ask for.
        **{f"openova.io/vcluster-{vc}-storage": "hcloud-volumes" for vc in ("mgmt", "dmz", "rtz")},
    }
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


# --- quotas that fit --------------------------------------------------------------------------

QUOTA = "kubernetes:core/v1:ResourceQuota"
LIMITS = "kubernetes:core/v1:LimitRange"


def in_namespace(run: Run, type_: str, namespace: str) -> Registration:
    return next(r for r in run.of_type(type_) if r.inputs["metadata"]["namespace"] == namespace)


def test_each_vcluster_namespace_has_its_roles_quota_and_limits(
    primary: Run, secondary: Run
) -> None:
    hard = {
        ns: in_namespace(run, QUOTA, ns).inputs["spec"]["hard"]
        for run, ns in ((primary, "mgmt"), (primary, "dmz"), (secondary, "rtz"))
    }
    assert hard["dmz"]["requests.cpu"] == "1"
    assert hard["mgmt"]["requests.cpu"] == hard["rtz"]["requests.cpu"] == "2"
    for quota in hard.values():
        # No tenant takes a port on every node or orders a billed cloud load balancer.
        assert quota["services.nodeports"] == quota["services.loadbalancers"] == "0"
    limits = in_namespace(primary, LIMITS, "dmz").inputs["spec"]["limits"][0]
    assert limits["type"] == "Container"
    assert limits["max"] == {"cpu": "2", "memory": "2Gi"}
    # The release waits for both: the quota admits pods only once it exists.
    release = next(r for r in primary.of_type(RELEASE) if r.inputs["name"] == "dmz-vcluster")
    assert in_namespace(primary, QUOTA, "dmz").urn in release.dependencies
    assert in_namespace(primary, LIMITS, "dmz").urn in release.dependencies


def test_quota_inputs_are_typed_per_key() -> None:
    run = evaluate(
        "primary",
        {"vclusters": {"dmz": {"quota": {"requestsCpu": "1500m", "pods": 0, "limitsCpu": "lots"}}}},
    )
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:vclusters.dmz.quota.pods = 0: a number at least 1" in (message)
    assert "sovereign:vclusters.dmz.quota.limitsCpu = 'lots': a Kubernetes quantity" in message
    ok = evaluate("primary", {"vclusters": {"dmz": {"quota": {"requestsCpu": "1500m"}}}})
    assert ok.error is None, ok.error
    hard = in_namespace(ok, QUOTA, "dmz").inputs["spec"]["hard"]
    assert hard["requests.cpu"] == "1500m"
    assert hard["requests.memory"] == "2Gi", "the other keys keep the role's default"


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_the_vclusters_own_pods_fit_the_default_quotas(stack: str) -> None:
    # Computed from the rendered StatefulSet (init containers included), its claim and services,
    # and the CoreDNS Deployment and Service the syncer creates from the chart's manifest.
    cfg = parse(stack_config(stack), stack)
    rendered = [r for r in render_releases(cfg) if r.spec.vcluster is not None]
    assert len(rendered) == 2
    for release in rendered:
        assert release.spec.vcluster is not None
        spec = cfg.vclusters.spec(release.spec.vcluster)
        used, too_big = vcluster_usage(release.objects, spec.limits)
        assert too_big == []
        assert used["requests.cpu"] == Fraction("0.24")  # syncer 200m + 2 x CoreDNS 20m
        assert used["limits.memory"] == parse_quantity("1Gi") + 2 * parse_quantity("170Mi")
        assert used["pods"] == 3
        # A Hetzner volume (the default class) is 10 GiB at least.
        assert used["requests.storage"] == parse_quantity("10Gi")
        for key, hard in quota_hard(release.spec.vcluster, spec.quota).items():
            assert used[key] <= parse_quantity(hard), (release.spec.name, key)
            if key.startswith(("requests.", "limits.")) or key == "pods":
                # And tenants get at least as much again.
                assert 2 * used[key] <= parse_quantity(hard), (release.spec.name, key)
    assert quota_fit_problems(cfg, [(r.spec.vcluster, r.objects) for r in rendered]) == []


def test_a_quota_or_limit_the_vcluster_cannot_fit_is_refused_at_preview() -> None:
    run = evaluate(
        "primary",
        {
            "vclusters": {
                "mgmt": {
                    "quota": {"requestsMemory": "256Mi", "pods": 2},
                    "limits": {"maxCpu": "1"},
                }
            }
        },
    )
    assert run.registrations == []
    message = str(run.error)
    assert (
        "sovereign:vclusters.mgmt.quota.requestsMemory = '256Mi': at least 0.50Gi: what the MGMT "
        "vCluster's own pods take (requests.memory)"
    ) in message
    assert "sovereign:vclusters.mgmt.quota.pods = '2': at least 3" in message
    assert (
        "sovereign:vclusters.mgmt.limits = maxCpu 1, maxMemory 2Gi: at least the limits of the "
        "vCluster's own containers: syncer (cpu) ask for more"
    ) in message


def test_limit_range_defaults_fill_a_container_that_asks_for_nothing() -> None:
    limits = ContainerLimits()
    bare = {"containers": [{"name": "app"}]}
    usage, too_big = pod_usage(bare, limits)
    assert usage["requests.cpu"] == Fraction(50, 1000)
    assert usage["limits.memory"] == parse_quantity("512Mi")
    assert too_big == []
    # A limit alone is also the request (the API server's defaulting), and init containers
    # count by the largest one, not their sum.
    pod = {
        "initContainers": [
            {"name": "a", "resources": {"limits": {"cpu": "3", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ],
        "containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}}}],
    }
    usage, too_big = pod_usage(pod, limits)
    assert usage["requests.cpu"] == 3
    assert too_big == ["a (cpu)"]
