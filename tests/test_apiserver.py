"""Issue 16 §4: a deployer identity that can be revoked, and the API server's audit log."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from checks.kubernetes_schema import schema_errors
from config.errors import SovereignConfigError
from config.models import StackConfig
from render import apiserver, cloudinit, wait_for_api
from tests.helpers import PUBLIC_IP, TOKEN, FakeClock, cfg, wait_env


def _files(c: StackConfig, node: int) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(cloudinit.render_user_data(c, node, PUBLIC_IP, TOKEN))
    return {f["path"]: f for f in doc["write_files"]}


def k3s(c: StackConfig, node: int) -> dict[str, Any]:
    return yaml.safe_load(_files(c, node)[cloudinit.K3S_CONFIG_PATH]["content"])


def test_the_first_server_binds_the_deployers_group_to_cluster_admin() -> None:
    c = cfg("secondary", api={"deployerGroup": "acme:deployers"})
    binding = yaml.safe_load(_files(c, 0)[apiserver.DEPLOYER_BINDING_PATH]["content"])
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"]["name"] == "cluster-admin"
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "acme:deployers"}
    ]
    assert schema_errors(binding, c.control_plane.k3s_version) == []
    # k3s's auto-deploy directory, which it applies at start.
    assert apiserver.DEPLOYER_BINDING_PATH.startswith("/var/lib/rancher/k3s/server/manifests/")


def test_joining_servers_do_not_reapply_the_binding() -> None:
    c = cfg("secondary")
    for node in (1, 2):
        assert apiserver.DEPLOYER_BINDING_PATH not in _files(c, node)


def test_the_deployer_certificate_is_never_system_masters() -> None:
    assert cfg().api.deployer_group == "sovereign:deployers"
    for group in ("system:masters", "system:nodes", "Has Spaces", ""):
        with pytest.raises(SovereignConfigError) as err:
            cfg(api={"deployerGroup": group})
        assert "sovereign:api.deployerGroup" in str(err.value)
        assert "system:masters bypasses RBAC" in str(err.value)


def test_the_wait_rides_out_the_binding_appearing_after_the_api(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    clock = FakeClock()

    def answer(url: str, context: Any) -> tuple[int, bytes]:
        if url.endswith("/readyz"):
            return 200, b"ok"
        # RBAC denies node reads for the first 30 s, until k3s applied the binding.
        return (403, b"") if clock.now < 30 else (200, b"{}")

    monkeypatch.setattr(wait_for_api, "_get", answer)
    env = wait_env(SOVEREIGN_NODES_MUST_BE="registered", SOVEREIGN_TIMEOUT="120")
    assert wait_for_api.wait(env, clock) == 0
    assert "omantel-hel1-2-cp-2 joined" in capsys.readouterr().err


def test_a_binding_that_never_appears_is_named_with_how_to_look(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    monkeypatch.setattr(
        wait_for_api, "_get", lambda url, ctx: (200, b"") if url.endswith("z") else (403, b"")
    )
    assert wait_for_api.wait(wait_env(SOVEREIGN_NODES_MUST_BE="registered"), FakeClock()) == 1
    err = capsys.readouterr().err
    assert "HTTP 403" in err
    assert f"ClusterRoleBinding {apiserver.DEPLOYER_BINDING}" in err
    assert "revoked" in err
    assert wait_for_api.BINDING == apiserver.DEPLOYER_BINDING


# Audit log


def test_every_server_writes_a_bounded_rotated_audit_log() -> None:
    c = cfg("secondary")
    for node in range(3):
        args = k3s(c, node)["kube-apiserver-arg"]
        flags = dict(a.split("=", 1) for a in args)
        assert flags["audit-policy-file"] == apiserver.AUDIT_POLICY_PATH
        assert flags["audit-log-path"] == apiserver.AUDIT_LOG_PATH
        assert int(flags["audit-log-maxsize"]) > 0
        assert int(flags["audit-log-maxbackup"]) > 0
        assert int(flags["audit-log-maxage"]) > 0
        policy = _files(c, node)[apiserver.AUDIT_POLICY_PATH]
        assert policy["permissions"] == "0600"
        assert yaml.safe_load(policy["content"]) == yaml.safe_load(
            apiserver.AUDIT_POLICY_FILE.read_text()
        )


def _level(policy: dict[str, Any], verb: str, group: str, resource: str) -> str:
    """The level the API server gives a request: the first rule that matches it."""
    for rule in policy["rules"]:
        if "verbs" in rule and verb not in rule["verbs"]:
            continue
        kinds = rule.get("resources")
        if kinds is not None and not any(
            k.get("group", "") == group and resource in k.get("resources", [resource])
            for k in kinds
        ):
            continue
        return rule["level"]
    return "None"


VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@pytest.mark.parametrize(
    ("group", "resource"),
    [("", "secrets"), ("", "configmaps"), ("", "serviceaccounts/token")],
)
def test_the_audit_log_never_holds_a_secret_body(group: str, resource: str) -> None:
    policy = yaml.safe_load(apiserver.AUDIT_POLICY)
    assert policy["apiVersion"] == "audit.k8s.io/v1"
    for verb in VERBS:
        # Metadata: who did what to which object, without request or response body.
        assert _level(policy, verb, group, resource) == "Metadata", (verb, resource)


def test_the_audit_log_records_who_changed_what() -> None:
    policy = yaml.safe_load(apiserver.AUDIT_POLICY)
    for verb in ("create", "update", "patch", "delete"):
        assert _level(policy, verb, "apps", "deployments") == "Request"
        assert _level(policy, verb, "rbac.authorization.k8s.io", "clusterrolebindings") == (
            "Request"
        )
    # Reads and the leases every node renews every few seconds stay out of the bounded files.
    assert _level(policy, "get", "apps", "deployments") == "None"
    assert _level(policy, "update", "coordination.k8s.io", "leases") == "None"
    assert policy["omitStages"] == ["RequestReceived"]
