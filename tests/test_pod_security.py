"""The Pod Security evaluator on its own: every check of the standard, in both directions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from config.pss import Level
from render.pod_security import (
    evaluate,
    helm_merge,
    pss_labels,
    refusal_message,
    vcluster_pod_spec,
)

# A pod that passes `restricted`: the reference point every case below changes one thing of.
RESTRICTED_CTX: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(
    *,
    pod_ctx: dict[str, Any] | None = None,
    ctx: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "securityContext": ctx or dict(RESTRICTED_CTX)}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    return {"securityContext": pod_ctx or {}, "containers": [container], **spec}


def with_ctx(**changes: Any) -> dict[str, Any]:
    return pod(ctx={**RESTRICTED_CTX, **changes})


def checks(p: dict[str, Any], level: Level) -> list[str]:
    return [v.check for v in evaluate(p, level)]


def test_the_reference_pod_passes_every_level() -> None:
    for level in ("privileged", "baseline", "restricted"):
        assert evaluate(pod(), level) == []


# (check as PodSecurity names it, violating pod, the same concern done right)
BASELINE_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("host namespaces", pod(hostNetwork=True), pod(hostNetwork=False)),
    ("host namespaces", pod(hostPID=True), pod(hostPID=False)),
    ("host namespaces", pod(hostIPC=True), pod(hostIPC=False)),
    ("privileged", with_ctx(privileged=True), with_ctx(privileged=False)),
    (
        "non-default capabilities",
        with_ctx(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}),
        with_ctx(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
    ),
    (
        "hostPath volumes",
        pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        pod(volumes=[{"name": "root", "emptyDir": {}}]),
    ),
    (
        "hostPort",
        pod(ports=[{"containerPort": 80, "hostPort": 80}]),
        pod(ports=[{"containerPort": 80}]),
    ),
    (
        "forbidden AppArmor profile",
        with_ctx(appArmorProfile={"type": "Unconfined"}),
        with_ctx(appArmorProfile={"type": "RuntimeDefault"}),
    ),
    (
        "forbidden AppArmor profile",
        pod(pod_ctx={"appArmorProfile": {"type": "Unconfined"}}),
        pod(pod_ctx={"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}),
    ),
    (
        "seLinuxOptions",
        with_ctx(seLinuxOptions={"type": "spc_t"}),
        with_ctx(seLinuxOptions={"type": "container_t", "level": "s0:c1"}),
    ),
    (
        "seLinuxOptions",
        pod(pod_ctx={"seLinuxOptions": {"user": "system_u"}}),
        pod(pod_ctx={"seLinuxOptions": {"level": "s0"}}),
    ),
    ("procMount", with_ctx(procMount="Unmasked"), with_ctx(procMount="Default")),
    (
        "seccompProfile",
        pod(pod_ctx={"seccompProfile": {"type": "Unconfined"}}),
        pod(pod_ctx={"seccompProfile": {"type": "RuntimeDefault"}}),
    ),
    (
        "forbidden sysctls",
        pod(pod_ctx={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
        pod(pod_ctx={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
    ),
    (
        "hostProcess",
        with_ctx(windowsOptions={"hostProcess": True}),
        with_ctx(windowsOptions={"hostProcess": False}),
    ),
]


REWORDED = {
    "non-default capabilities": "unrestricted capabilities",
    "hostPath volumes": "restricted volume types",
}


@pytest.mark.parametrize(("check", "bad", "good"), BASELINE_CASES)
def test_baseline_checks_both_ways(check: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    assert checks(bad, "baseline") == [check]
    assert checks(good, "baseline") == []
    # restricted refuses whatever baseline refuses, where its own check of the same concern
    # takes over the wording; privileged checks nothing.
    assert checks(bad, "restricted") == [REWORDED.get(check, check)]
    assert checks(good, "restricted") == []
    assert evaluate(bad, "privileged") == []


RESTRICTED_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "allowPrivilegeEscalation != false",
        pod(ctx={k: v for k, v in RESTRICTED_CTX.items() if k != "allowPrivilegeEscalation"}),
        with_ctx(allowPrivilegeEscalation=False),
    ),
    (
        "unrestricted capabilities",
        with_ctx(capabilities={"drop": ["NET_RAW"]}),
        with_ctx(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
    ),
    (
        "unrestricted capabilities",
        with_ctx(capabilities={"drop": ["ALL"], "add": ["CHOWN"]}),
        with_ctx(capabilities={"drop": ["ALL"]}),
    ),
    (
        "restricted volume types",
        pod(volumes=[{"name": "nfs", "nfs": {"server": "x", "path": "/"}}]),
        pod(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]),
    ),
    (
        "runAsNonRoot != true",
        pod(ctx={k: v for k, v in RESTRICTED_CTX.items() if k != "runAsNonRoot"}),
        pod(
            pod_ctx={"runAsNonRoot": True},
            ctx={k: v for k, v in RESTRICTED_CTX.items() if k != "runAsNonRoot"},
        ),
    ),
    (
        "runAsNonRoot != true",
        pod(pod_ctx={"runAsNonRoot": False}),
        pod(pod_ctx={"runAsNonRoot": True}),
    ),
    ("runAsUser=0", with_ctx(runAsUser=0), with_ctx(runAsUser=1000)),
    ("runAsUser=0", pod(pod_ctx={"runAsUser": 0}), pod(pod_ctx={"runAsUser": 65532})),
    (
        "seccompProfile",
        pod(ctx={k: v for k, v in RESTRICTED_CTX.items() if k != "seccompProfile"}),
        pod(
            pod_ctx={"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
            ctx={k: v for k, v in RESTRICTED_CTX.items() if k != "seccompProfile"},
        ),
    ),
]


@pytest.mark.parametrize(("check", "bad", "good"), RESTRICTED_CASES)
def test_restricted_checks_both_ways(check: str, bad: dict[str, Any], good: dict[str, Any]) -> None:
    assert checks(bad, "restricted") == [check]
    assert checks(good, "restricted") == []
    # None of these are baseline concerns (baseline tolerates root and kept capabilities).
    assert evaluate(bad, "baseline") == []


def test_details_name_the_containers_and_the_fix() -> None:
    p = {
        "securityContext": {},
        "initContainers": [{"name": "init", "securityContext": {"runAsUser": 0}}],
        "containers": [
            {"name": "a", "securityContext": {"privileged": True}},
            {"name": "b", "securityContext": {"privileged": True, "runAsUser": 0}},
        ],
    }
    by_check = {v.check: v.detail for v in evaluate(p, "restricted")}
    assert by_check["privileged"] == (
        'containers "a", "b" must not set securityContext.privileged=true'
    )
    # Init containers come first, as PodSecurity lists them.
    assert by_check["runAsUser=0"] == 'containers "init", "b" must not set runAsUser=0'
    assert by_check["allowPrivilegeEscalation != false"] == (
        'containers "init", "a", "b" must set securityContext.allowPrivilegeEscalation=false'
    )


def test_restricted_volume_types_name_volumes_and_types() -> None:
    p = pod(
        volumes=[
            {"name": "root", "hostPath": {"path": "/"}},
            {"name": "share", "nfs": {"server": "x", "path": "/"}},
            {"name": "scratch", "emptyDir": {}},
        ]
    )
    (violation,) = evaluate(p, "restricted")
    assert violation.detail == (
        'volumes "root", "share" use restricted volume types "hostPath", "nfs"'
    )
    assert evaluate(p, "baseline")[0].detail == 'volume "root"'


def test_checks_come_in_podsecuritys_order() -> None:
    everything = pod(hostNetwork=True, ctx={"privileged": True, "runAsUser": 0})
    assert checks(everything, "restricted") == [
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "host namespaces",
        "privileged",
        "runAsNonRoot != true",
        "runAsUser=0",
        "seccompProfile",
    ]


def test_sysctls_follow_the_policy_version() -> None:
    newer = pod(pod_ctx={"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]})
    assert checks(newer, "baseline") == []
    assert checks(newer, "baseline") == [v.check for v in evaluate(newer, "baseline", "v1.29")]
    assert [v.check for v in evaluate(newer, "baseline", "v1.28")] == ["forbidden sysctls"]


def test_an_invalid_version_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`latest` or `v1\.NN`"):
        evaluate(pod(), "baseline", "1.31")


def test_refusal_message_reads_like_podsecurity() -> None:
    violations = evaluate(with_ctx(runAsUser=0), "restricted", "v1.31")
    assert refusal_message("mgmt", "restricted", "v1.31", violations) == (
        'namespace "mgmt" would refuse the pod: violates PodSecurity "restricted:v1.31": '
        'runAsUser=0 (container "app" must not set runAsUser=0)'
    )


def test_pss_labels_render_all_six() -> None:
    assert pss_labels("baseline", "restricted", "privileged", "v1.30") == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "v1.30",
        "pod-security.kubernetes.io/warn": "privileged",
        "pod-security.kubernetes.io/warn-version": "v1.30",
    }


def test_helm_merge_keeps_defaults_merges_maps_and_null_deletes() -> None:
    defaults = {"runAsUser": 0, "runAsGroup": 0, "capabilities": {"drop": ["NET_RAW"]}}
    assert helm_merge(defaults, {"runAsUser": 1000, "runAsGroup": None}) == {
        "runAsUser": 1000,
        "capabilities": {"drop": ["NET_RAW"]},
    }
    assert helm_merge(defaults, {"capabilities": {"add": ["X"]}})["capabilities"] == {
        "drop": ["NET_RAW"],
        "add": ["X"],
    }
    assert helm_merge(defaults, {}) == defaults


def test_the_chart_default_vcluster_pod() -> None:
    spec = vcluster_pod_spec({})
    assert [c["name"] for c in spec["initContainers"]] == [
        "vcluster-copy",
        "kube-controller-manager",
        "kube-apiserver",
    ]
    assert spec["containers"] == [
        {
            "name": "syncer",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "runAsUser": 0,
                "runAsGroup": 0,
            },
        }
    ]
    # The chart's own pod is fine under baseline, refused under restricted.
    assert evaluate(spec, "baseline") == []
    assert [v.check for v in evaluate(spec, "restricted")] == [
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "runAsUser=0",
        "seccompProfile",
    ]


def test_release_values_reach_the_pod() -> None:
    values = {
        "controlPlane": {
            "distro": {"k8s": {"securityContext": {"privileged": True}}},
            "statefulSet": {
                "security": {
                    "podSecurityContext": {"hostNetwork": False, "runAsNonRoot": True},
                    "containerSecurityContext": {"runAsUser": 1000},
                }
            },
        }
    }
    spec = vcluster_pod_spec(values)
    assert spec["securityContext"] == {"hostNetwork": False, "runAsNonRoot": True}
    assert all(c["securityContext"] == {"privileged": True} for c in spec["initContainers"])
    assert spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsUser": 1000,
        "runAsGroup": 0,
    }
    (violation,) = evaluate(spec, "baseline")
    assert violation.check == "privileged"
    assert '"vcluster-copy", "kube-controller-manager", "kube-apiserver"' in violation.detail


# --- the hand-written model against Helm's own render ----------------------------------------
#
# The preflight inside `pulumi up` and the policy pack judge `vcluster_pod_spec` (no chart
# rendering there: see docs/pod-security-and-images.md). These tests hold that model to the real
# StatefulSet the vcluster 0.20.0 chart renders, for every configuration the tests use.

_HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _stack_values(stack: str, vcluster: str, security: dict[str, Any] | None) -> dict[str, Any]:
    from checks.preflight import parse
    from render.vcluster import vcluster_values
    from tools.mockrun import stack_config

    raw = stack_config(stack)
    if security is not None:
        raw["vclusters"][vcluster] = {**raw["vclusters"][vcluster], "security": security}
    cfg = parse(raw, stack)
    return vcluster_values(cfg, cfg.vclusters.spec(vcluster))  # type: ignore[arg-type]


# Every vCluster values set the tests use: the committed stacks, the hardened contexts of
# tests/test_vcluster.py, the raw values above and the chart's defaults.
MODEL_CASES: dict[str, Any] = {
    "primary dmz": lambda: _stack_values("primary", "dmz", None),
    "primary mgmt": lambda: _stack_values("primary", "mgmt", None),
    "secondary rtz": lambda: _stack_values("secondary", "rtz", None),
    "hardened mgmt": lambda: _stack_values(
        "primary",
        "mgmt",
        {
            "podSecurityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containerSecurityContext": _HARDENED,
            "distroSecurityContext": _HARDENED,
        },
    ),
    "privileged distro": lambda: {
        "controlPlane": {
            "distro": {"k8s": {"enabled": True, "securityContext": {"privileged": True}}},
            "statefulSet": {
                "security": {
                    "podSecurityContext": {"runAsNonRoot": True},
                    "containerSecurityContext": {"runAsUser": 1000},
                }
            },
        }
    },
    "chart defaults": lambda: {},
    "policy pack values": lambda: {
        "controlPlane": {"statefulSet": {"security": {"podSecurityContext": {}}}}
    },
}


def _security_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What Pod Security reads of a pod: contexts by container, host namespaces, volume kinds."""
    return {
        "securityContext": pod.get("securityContext") or {},
        "containers": [
            (c["name"], c.get("securityContext") or {})
            for key in ("initContainers", "containers")
            for c in pod.get(key, [])
        ],
        "host": {k: pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)},
        "volumeKinds": sorted({k for v in pod.get("volumes", []) for k in v if k != "name"}),
        "hostPorts": [
            p["hostPort"]
            for c in pod.get("containers", [])
            for p in c.get("ports", [])
            if p.get("hostPort")
        ],
    }


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_the_pod_model_equals_the_rendered_statefulset(case: str) -> None:
    from render.charts import VENDOR_DIR
    from render.helm import render_chart

    values = MODEL_CASES[case]()
    objects = render_chart(
        VENDOR_DIR / "vcluster-0.20.0.tgz", values, name="mgmt-vcluster", namespace="mgmt"
    )
    (sts,) = [o for o in objects if o.kind == "StatefulSet"]
    rendered = sts.doc["spec"]["template"]["spec"]
    model = vcluster_pod_spec(values)
    view, model_view = _security_view(rendered), _security_view(model)
    # The chart mounts more scratch volumes than the model names (and its data claim is a
    # volumeClaimTemplate); Pod Security only asks that every kind is one restricted allows.
    from render.pod_security import RESTRICTED_VOLUME_TYPES

    assert set(view.pop("volumeKinds")) <= RESTRICTED_VOLUME_TYPES
    assert set(model_view.pop("volumeKinds")) <= RESTRICTED_VOLUME_TYPES
    assert view == model_view
    for level in ("privileged", "baseline", "restricted"):
        assert evaluate(rendered, level) == evaluate(model, level), level
