"""Day 2: upgrades, the API endpoint, the cluster's identity, backups, replacement, the wait."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.preflight import parse
from components.control_plane import BOOT_LABEL_KEY
from config.errors import SovereignConfigError
from render import wait_for_api
from render.cloudinit import ETCD_S3_SECRET_NAME, K3S_CONFIG_PATH, K3S_TLS_DIR, restore_script
from render.naming import CLOUD_CONTROLLER_LABEL_KEY
from render.system_upgrade import controller_objects, release, skew_refusal
from tests.helpers import FakeClock, assert_shellcheck_clean, wait_env
from tools.mockrun import Run, SecretValue, evaluate, stack_config
from tools.plan_diff import effect_of

SERVER = "hcloud:index/server:Server"
PLAN = "kubernetes:upgrade.cattle.io/v1:Plan"
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
PROVIDER = "pulumi:providers:kubernetes"
RELEASE = "kubernetes:helm.sh/v3:Release"
BACKUPS = {
    "backups": {"enabled": True, "bucket": "omantel-etcd"},
    "backupsAccessKey": SecretValue("AKIA-fake-access-key-1234"),
    "backupsSecretKey": SecretValue("fake-secret-key-abcdefghijklmnop"),
}


def files_of(server: Any) -> dict[str, str]:
    doc = yaml.safe_load(server.inputs["userData"])
    return {f["path"]: f["content"] for f in doc["write_files"]}


def k3s_config(server: Any) -> dict[str, Any]:
    return yaml.safe_load(files_of(server)[K3S_CONFIG_PATH])


def live(stack: str, version: str, boot: str = "init") -> list[dict[str, Any]]:
    """Hetzner's answer for a deployed region whose servers carry `version`."""
    region = {"primary": "omantel-fsn1", "secondary": "omantel-hel1-2"}[stack]
    count = 1 if stack == "primary" else 3
    active = ("mgmt", "dmz") if stack == "primary" else ("dmz", "rtz")
    return [
        {
            "name": f"{region}-cp-{n}",
            "labels": {
                "openova.io/k3s-version": version.replace("+", "-"),
                # The Cilium the committed stacks pin: these tests move k3s alone.
                "openova.io/cilium-version": "1.19.6",
                BOOT_LABEL_KEY: boot if n == 1 else "join",
                # Created with Secrets encrypted at rest (components/control_plane.py).
                "openova.io/secrets-encryption": "true",
                # Created with the deployer binding in cp-1's first boot (components/record.py).
                "openova.io/deployer-binding": "boot",
                # Booted for the Hetzner CCM (checks/hetzner.py refuses a switch).
                CLOUD_CONTROLLER_LABEL_KEY: "hetzner",
                # Its vClusters' data on Hetzner volumes (checks/tenants.py).
                **{f"openova.io/vcluster-{vc}-storage": "hcloud-volumes" for vc in active},
                # Deployed by this program: its vClusters rootless (checks/tenants.py).
                **{
                    f"openova.io/vcluster-{vc}": "rootless" if vc in active else "none"
                    for vc in ("mgmt", "dmz", "rtz")
                },
            },
            "deleteProtection": True,
        }
        for n in range(1, count + 1)
    ]


def server(run: Run, n: int) -> Any:
    return next(s for s in run.of_type(SERVER) if s.inputs["name"].endswith(f"-cp-{n}"))


# 1. Upgrades


def test_server_plan_carries_the_version_one_server_at_a_time_cordoned(secondary: Run) -> None:
    plan = secondary.one(PLAN, "slot-03-system-upgrade-server-plan")
    spec = plan.inputs["spec"]
    assert spec["version"] == "v1.35.6+k3s1"
    assert spec["concurrency"] == 1
    assert spec["cordon"] is True
    assert "drain" not in spec
    assert spec["upgrade"]["image"] == "rancher/k3s-upgrade"
    assert spec["nodeSelector"]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}
    ]
    assert plan.inputs["metadata"] == {"name": "k3s-server", "namespace": "system-upgrade"}


def test_the_controller_is_the_pinned_release_after_its_crds_and_cilium(primary: Run) -> None:
    crds = primary.one(CONFIG_FILE, "slot-03-system-upgrade-crds")
    controller = primary.one("kubernetes:yaml/v2:ConfigGroup", "slot-03-system-upgrade-controller")
    # The vendored CRD file (sha256-checked), not the release's download URL.
    assert crds.inputs["file"] == (
        "render/upstream/system-upgrade-controller-v0.20.1/upgrade.cattle.io_plans.yaml"
    )
    objects = controller.inputs["objs"]
    assert [o["kind"] for o in objects] == [o["kind"] for o in controller_objects()]
    (deployment,) = (o for o in objects if o["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"rancher/system-upgrade-controller:{release().version}"
    assert crds.urn in controller.dependencies
    cilium = primary.one(RELEASE, "slot-01-cilium-release")
    assert cilium.urn in crds.dependencies
    assert {crds.urn, controller.urn} <= set(primary.one(PLAN).dependencies)


def test_a_version_bump_changes_the_plan_not_the_servers() -> None:
    run = evaluate(
        "secondary",
        {"controlPlane": {"k3sVersion": "v1.33.14+k3s1"}},
        live_servers=live("secondary", "v1.32.11+k3s3"),
    )
    assert run.error is None, run.error
    assert (
        run.one(PLAN, "slot-03-system-upgrade-server-plan").inputs["spec"]["version"]
        == "v1.33.14+k3s1"
    )
    for n in (1, 2, 3):
        s = server(run, n)
        assert set(s.ignore_changes) == {"userData", "image", "sshKeys"}
        assert s.inputs["labels"]["openova.io/k3s-version"] == "v1.33.14-k3s1"
        # A server created now installs the same version the Plan moves the others to.
        assert "\n    version=v1.33.14+k3s1\n" in s.inputs["userData"]


@pytest.mark.parametrize(
    ("deployed", "wanted", "reason"),
    [
        ("v1.33.14+k3s1", "v1.33.13+k3s2", "a downgrade from the deployed v1.33.14+k3s1"),
        ("v1.33.13+k3s3", "v1.33.13+k3s2", "a downgrade"),
        (
            "v1.31.4+k3s1",
            "v1.33.13+k3s2",
            # Kubernetes 1.32 is outside cert-manager 1.21's range: no supported step exists.
            "no sequence of supported one-minor steps leads from k3s v1.31.4+k3s1 with Cilium "
            "1.19.6 to Kubernetes 1.33",
        ),
    ],
)
def test_skew_is_refused_at_preview_by_key_and_value(
    deployed: str, wanted: str, reason: str
) -> None:
    run = evaluate(
        "secondary",
        {"controlPlane": {"k3sVersion": wanted}},
        live_servers=live("secondary", deployed),
    )
    assert run.registrations == [], "refused before any resource"
    message = str(run.error)
    assert f"sovereign:controlPlane.k3sVersion = '{wanted}': {reason}" in message
    assert deployed in message


def test_one_minor_up_a_patch_or_the_same_version_is_allowed() -> None:
    for deployed, wanted in (
        ("v1.31.4+k3s1", "v1.32.0+k3s1"),
        ("v1.31.4+k3s1", "v1.31.9+k3s1"),
        ("v1.31.4+k3s1", "v1.31.4+k3s1"),
    ):
        assert skew_refusal(deployed, wanted) is None


def test_the_diff_shows_a_bump_as_an_in_place_upgrade() -> None:
    effect, replaces = effect_of({"type": PLAN, "ignoreChanges": []}, "spec.version")
    assert effect.startswith("in-place k3s upgrade through system-upgrade-controller")
    assert replaces is False


# 2. Kubeconfig and the wait


def test_kubeconfig_is_built_from_the_minted_ca_and_client_certificate(secondary: Run) -> None:
    doc = yaml.safe_load(secondary.outputs["kubeconfig"])
    lb_ip = secondary.outputs["apiLoadBalancerIp"]
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{lb_ip}:6443"
    cert = secondary.one("tls:index/locallySignedCert:LocallySignedCert")
    assert cert.inputs["earlyRenewalHours"] == 120 * 24
    assert cert.inputs["validityPeriodHours"] == 365 * 24
    assert "client_auth" in cert.inputs["allowedUses"]
    csr = secondary.one("tls:index/certRequest:CertRequest")
    # A group RBAC binds (revocable), never system:masters, which skips RBAC.
    assert csr.inputs["subject"]["organization"] == "sovereign:deployers"
    # cp-1's first boot writes the binding, and the servers say so for later previews.
    assert secondary.of_type(BINDING) == []
    for n in (1, 2, 3):
        assert server(secondary, n).inputs["labels"]["openova.io/deployer-binding"] == "boot"


BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"


def organization(run: Run) -> str:
    return run.one("tls:index/certRequest:CertRequest").inputs["subject"]["organization"]


def before_the_binding(stack: str) -> list[dict[str, Any]]:
    """A region deployed before issue 16 §4: its cp-1 never wrote the binding's manifest."""
    servers = live(stack, "v1.35.6+k3s1")
    for entry in servers:
        entry["labels"].pop("openova.io/deployer-binding")
    return servers


def test_an_older_region_keeps_its_certificate_until_the_binding_exists() -> None:
    # Its next `up` must not mint a certificate for a group nothing binds (every call 403): the
    # certificate stays system:masters while the program creates the binding through the API.
    run = evaluate("secondary", live_servers=before_the_binding("secondary"))
    assert run.error is None, run.error
    assert organization(run) == "system:masters"
    binding = run.one(BINDING, "omantel-hel1-2-deployer-binding")
    assert binding.inputs["metadata"]["name"] == "sovereign-deployers"
    assert binding.inputs["roleRef"]["name"] == "cluster-admin"
    assert binding.inputs["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "sovereign:deployers"}
    ]
    provider = run.one("pulumi:providers:kubernetes")
    assert binding.provider.startswith(provider.urn)
    wait = run.one("command:local:Command", "omantel-hel1-2-wait")
    assert wait.urn in binding.dependencies
    # Recorded only once the binding exists: that is what lets the next `up` switch.
    group = run.one("hcloud:index/placementGroup:PlacementGroup", "omantel-hel1-2-region-record")
    assert binding.urn in group.dependencies
    assert group.inputs["labels"]["openova.io/deployer-binding"] == "api"
    for n in (1, 2, 3):
        assert "openova.io/deployer-binding" not in server(run, n).inputs["labels"]
    # Every preview says what this up does and what the next one does.
    assert any(
        "keeps the deployer certificate in system:masters" in line
        and "the next up moves the certificate" in line
        for line in run.logs
    ), run.logs


def test_once_the_record_says_the_binding_exists_the_certificate_moves_to_the_group() -> None:
    run = evaluate(
        "secondary",
        live_servers=before_the_binding("secondary"),
        live_record={"openova.io/deployer-binding": "api", "openova.io/cilium-version": "1.19.6"},
    )
    assert run.error is None, run.error
    assert organization(run) == "sovereign:deployers"
    # Still declared: dropping it would delete the binding the certificate now depends on.
    assert run.one(BINDING).inputs["metadata"]["name"] == "sovereign-deployers"
    group = run.one("hcloud:index/placementGroup:PlacementGroup", "omantel-hel1-2-region-record")
    assert group.inputs["labels"]["openova.io/deployer-binding"] == "api"
    # A region created with the binding at first boot needs neither.
    modern = evaluate("secondary", live_servers=live("secondary", "v1.35.6+k3s1"))
    assert organization(modern) == "sovereign:deployers"
    assert modern.of_type(BINDING) == []
    for quiet in (run, modern):
        assert not any("system:masters" in line for line in quiet.logs), quiet.logs
        assert not any("secrets-encryption" in line for line in quiet.logs), quiet.logs


def test_the_first_server_gets_every_ca_file_and_the_joiners_none(secondary: Run) -> None:
    first = files_of(server(secondary, 1))
    expected = {
        "service.key",
        "server-ca.crt",
        "server-ca.key",
        "client-ca.crt",
        "client-ca.key",
        "request-header-ca.crt",
        "request-header-ca.key",
        "etcd/peer-ca.crt",
        "etcd/peer-ca.key",
        "etcd/server-ca.crt",
        "etcd/server-ca.key",
    }
    assert {
        p.removeprefix(K3S_TLS_DIR + "/") for p in first if p.startswith(K3S_TLS_DIR)
    } == expected
    for n in (2, 3):
        assert not [p for p in files_of(server(secondary, n)) if p.startswith(K3S_TLS_DIR)]


def test_the_provider_and_cilium_wait_for_every_node_to_join(secondary: Run) -> None:
    joined = secondary.one("command:local:Command", "omantel-hel1-2-wait")
    assert joined.inputs["environment"]["SOVEREIGN_NODES_MUST_BE"] == "registered"
    assert "environment" in joined.secret_inputs
    # The provider reports the cluster unreachable for the whole run if it starts first.
    provider = secondary.one("pulumi:providers:kubernetes")
    assert joined.urn in provider.dependencies
    cilium = secondary.one(RELEASE, "slot-01-cilium-release")
    assert joined.urn in cilium.dependencies


def test_every_slot_after_cilium_waits_for_every_node_to_be_ready(secondary: Run) -> None:
    ready = secondary.one("command:local:Command", "slot-01-cilium-nodes-ready")
    assert ready.inputs["environment"]["SOVEREIGN_NODES_MUST_BE"] == "Ready"
    cilium = secondary.one(RELEASE, "slot-01-cilium-release")
    assert cilium.urn in ready.dependencies
    # Later releases wait for slot 01 as a whole (the SDK expands a component into its
    # children), which the Ready wait is part of.
    assert secondary.by_urn(ready.parent).name == "slot-01-cilium"
    for name in ("slot-02-cert-manager-release", "slot-54-dmz-vcluster-release"):
        assert ready.urn in secondary.one(RELEASE, name).dependencies


def test_the_wait_is_bounded_and_says_what_it_waited_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)

    def refused(url: str, context: Any) -> tuple[int, bytes]:
        raise OSError("connection refused")

    monkeypatch.setattr(wait_for_api, "_get", refused)
    assert wait_for_api.wait(wait_env(), FakeClock()) == 1
    err = capsys.readouterr().err
    assert "waited 12s for the Kubernetes API at https://127.0.0.1:9/readyz" in err
    assert "connection refused" in err


def test_the_wait_names_the_server_that_never_joined(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    ready = b'{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}'

    def answer(url: str, context: Any) -> tuple[int, bytes]:
        if url.endswith("/readyz") or url.endswith("cp-1"):
            return 200, ready
        return 404, b""

    monkeypatch.setattr(wait_for_api, "_get", answer)
    assert wait_for_api.wait(wait_env(), FakeClock()) == 1
    err = capsys.readouterr().err
    assert "omantel-hel1-2-cp-1 is Ready" in err
    assert "server omantel-hel1-2-cp-2 (198.51.100.2) to be Ready (Cilium is installed)" in err
    assert "did not register as a node" in err
    assert "cloud-init status --long" in err


def test_before_cilium_a_node_needs_only_to_join(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without flannel a node reports NetworkPluginNotReady until Cilium installs the CNI.
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    not_ready = (
        b'{"status": {"conditions": [{"type": "Ready", "status": "False", '
        b'"reason": "KubeletNotReady", "message": "container runtime network not ready: '
        b'NetworkReady=false reason:NetworkPluginNotReady"}]}}'
    )
    monkeypatch.setattr(wait_for_api, "_get", lambda url, context: (200, not_ready))
    assert wait_for_api.wait(wait_env(SOVEREIGN_NODES_MUST_BE="registered"), FakeClock()) == 0
    assert "omantel-hel1-2-cp-2 joined" in capsys.readouterr().err
    # The same nodes do not pass the Ready wait.
    assert wait_for_api.wait(wait_env(SOVEREIGN_NODES_MUST_BE="Ready"), FakeClock()) == 1
    assert "to be Ready (Cilium is installed): it is not Ready" in capsys.readouterr().err


def test_after_a_restore_the_wait_refuses_an_empty_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from components.kubeconfig import RESTORED_OBJECT

    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    asked: list[str] = []

    def empty(url: str, context: Any) -> tuple[int, bytes]:
        asked.append(url)
        return (404, b"") if url.endswith(RESTORED_OBJECT) else (200, b"{}")

    monkeypatch.setattr(wait_for_api, "_get", empty)
    env = wait_env(SOVEREIGN_NODES_MUST_BE="registered", SOVEREIGN_MUST_EXIST=RESTORED_OBJECT)
    assert wait_for_api.wait(env, FakeClock()) == 1
    err = capsys.readouterr().err
    assert "the restore brought nothing back" in err
    assert "Refusing to continue" in err
    assert not any("/nodes/" in url for url in asked), "stops before anything else"
    # With the object back, the same wait goes on to the nodes.
    monkeypatch.setattr(wait_for_api, "_get", lambda url, context: (200, b"{}"))
    assert wait_for_api.wait(env, FakeClock()) == 0


def test_a_restoring_up_checks_the_restore_before_keeping_the_identity() -> None:
    from components.kubeconfig import RESTORED_OBJECT

    run = evaluate("primary", RESTORE)
    assert run.error is None, run.error
    wait = run.one("command:local:Command", "omantel-fsn1-wait")
    assert wait.inputs["environment"]["SOVEREIGN_MUST_EXIST"] == RESTORED_OBJECT
    identity = run.one("random:index/randomId:RandomId", "omantel-fsn1-cluster-id")
    assert wait.urn in identity.dependencies
    assert identity.ignore_changes == ["keepers.initServer"]
    # A normal up has nothing to check.
    plain = evaluate("primary", BACKUPS)
    assert (
        "SOVEREIGN_MUST_EXIST"
        not in plain.one("command:local:Command", "omantel-fsn1-wait").inputs["environment"]
    )


def test_the_wait_really_times_out_against_a_closed_port() -> None:
    # The real script with a real TLS context and real sockets, nothing listening: it must give
    # up at its bound (the clock is simulated so the test does not sleep through it).
    started = time.monotonic()
    ca, cert, key = _self_signed()
    env = wait_env(SOVEREIGN_TIMEOUT="30", SOVEREIGN_CA=ca, SOVEREIGN_CERT=cert, SOVEREIGN_KEY=key)
    assert wait_for_api.wait(env, FakeClock()) == 1
    assert time.monotonic() - started < 20


def _self_signed() -> tuple[str, str, str]:
    """A throwaway CA and client pair from the system openssl (present wherever ssl is)."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                f"{d}/k",
                "-out",
                f"{d}/c",
                "-days",
                "1",
                "-subj",
                "/CN=t",
            ],
            check=True,
            capture_output=True,
        )
        cert, key = Path(d, "c").read_text(), Path(d, "k").read_text()
    return cert, cert, key


# 3. Identity and teardown


def test_identity_keeps_when_cp1_joined_and_follows_a_new_init_server() -> None:
    fresh = evaluate("secondary")
    keep = evaluate(
        "secondary",
        {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-1"}},
        live_servers=live("secondary", "v1.35.6+k3s1"),
    )
    assert keep.error is None, keep.error
    assert (
        fresh.one("random:index/randomId:RandomId", "omantel-hel1-2-cluster-id").ignore_changes
        == []
    )
    identity = keep.one("random:index/randomId:RandomId", "omantel-hel1-2-cluster-id")
    assert identity.ignore_changes == ["keepers.initServer"]
    assert set(identity.inputs["keepers"]) == {"serverCaKey", "initServer"}
    # The replaced cp-1 joins through the API endpoint instead of starting a new cluster.
    flags = k3s_config(server(keep, 1))
    assert flags["server"] == "https://10.0.1.253:6443"
    assert "cluster-init" not in flags
    assert server(keep, 1).inputs["labels"][BOOT_LABEL_KEY] == "join"


def test_delete_unreachable_is_off_unless_tearing_down(primary: Run) -> None:
    assert primary.one(PROVIDER).inputs["deleteUnreachable"] == "false"
    run = evaluate("primary", {"teardown": True})
    assert run.one(PROVIDER).inputs["deleteUnreachable"] == "true"


# 4. Backups


def test_backups_go_to_object_storage_with_secret_credentials_not_in_user_data() -> None:
    run = evaluate("primary", BACKUPS)
    assert run.error is None, run.error
    flags = k3s_config(run.one(SERVER))
    assert flags["etcd-s3"] is True
    assert flags["etcd-s3-config-secret"] == ETCD_S3_SECRET_NAME
    assert flags["etcd-snapshot-schedule-cron"] == "0 */6 * * *"
    assert flags["etcd-snapshot-retention"] == 28
    # The bucket is pruned at the same count: the Secret carries no retention.
    assert flags["etcd-s3-retention"] == 28
    assert "fake-secret-key" not in run.one(SERVER).inputs["userData"]
    secret = run.one("kubernetes:core/v1:Secret", "omantel-fsn1-etcd-backups-s3")
    assert secret.inputs["metadata"] == {"name": ETCD_S3_SECRET_NAME, "namespace": "kube-system"}
    assert "stringData" in secret.secret_inputs
    data = secret.inputs["stringData"]
    assert data["etcd-s3-endpoint"] == "fsn1.your-objectstorage.com"
    assert data["etcd-s3-bucket"] == "omantel-etcd"
    assert data["etcd-s3-folder"] == "fsn1"
    assert data["etcd-s3-secret-key"] == "fake-secret-key-abcdefghijklmnop"


def test_bucket_retention_follows_the_configured_count() -> None:
    run = evaluate("secondary", {**BACKUPS, "backups": {**BACKUPS["backups"], "retention": 7}})
    assert run.error is None, run.error
    for n in (1, 2, 3):
        flags = k3s_config(server(run, n))
        assert (flags["etcd-s3-retention"], flags["etcd-snapshot-retention"]) == (7, 7)
        # Any other etcd-s3 key in the file would make k3s ignore the Secret.
        assert {key for key in flags if key.startswith("etcd-s3")} == {
            "etcd-s3",
            "etcd-s3-config-secret",
            "etcd-s3-retention",
        }


def test_secrets_are_encrypted_at_rest_on_every_server_from_cluster_init(secondary: Run) -> None:
    flags = [k3s_config(server(secondary, n)) for n in (1, 2, 3)]
    assert "cluster-init" in flags[0]
    assert all(f["secrets-encryption"] is True for f in flags)
    # Recorded, so that a later joiner or replacement matches what the servers run.
    for n in (1, 2, 3):
        assert server(secondary, n).inputs["labels"]["openova.io/secrets-encryption"] == "true"


def older(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same region as created before secrets-encryption: its servers carry no label for it."""
    for entry in servers:
        entry["labels"].pop("openova.io/secrets-encryption")
    return servers


REPLACE_CP2 = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-2"}}


def test_a_replacement_in_an_older_ha_region_joins_without_secrets_encryption() -> None:
    # k3s requires `secrets-encryption` to match on every server (a critical value): a new cp-2
    # with it could not join cp-1 and cp-3, which started without it.
    run = evaluate("secondary", REPLACE_CP2, live_servers=older(unprotected("secondary")))
    assert run.error is None, run.error
    assert server(run, 2).ignore_changes == []  # really replaced
    assert "secrets-encryption" not in k3s_config(server(run, 2))
    for n in (1, 2, 3):
        assert server(run, n).inputs["labels"]["openova.io/secrets-encryption"] == "false"
    assert any(
        "the region's servers run without secrets-encryption" in line
        and "docs/day2.md ('Secrets at rest')" in line
        for line in run.logs
    ), run.logs


def test_a_replacement_in_a_region_created_with_it_keeps_secrets_encryption() -> None:
    run = evaluate("secondary", REPLACE_CP2, live_servers=unprotected("secondary"))
    assert run.error is None, run.error
    assert k3s_config(server(run, 2))["secrets-encryption"] is True
    # One server the operator has marked after turning it on (docs/day2.md) turns it on.
    marked = older(unprotected("secondary"))
    marked[0]["labels"]["openova.io/secrets-encryption"] = "true"
    run = evaluate("secondary", REPLACE_CP2, live_servers=marked)
    assert k3s_config(server(run, 2))["secrets-encryption"] is True
    assert server(run, 3).inputs["labels"]["openova.io/secrets-encryption"] == "true"


def test_local_snapshots_are_kept_without_backups(primary: Run) -> None:
    flags = k3s_config(primary.one(SERVER))
    assert flags["etcd-snapshot-retention"] == 28
    assert "etcd-s3" not in flags


def test_backup_problems_are_listed_by_key() -> None:
    raw = stack_config("primary") | {
        "backups": {"enabled": True},
        "region": {**stack_config("primary")["region"]},
    }
    raw["backupsAccessKey"] = "plain"
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, "primary", secret_keys=frozenset())
    message = str(err.value)
    assert "sovereign:backups.bucket = (not set): required" in message
    assert (
        "sovereign:backupsAccessKey = [redacted]: the Object Storage access key of etcd backups "
        "in plain text in the stack file" in message
    )
    assert "sovereign:backupsSecretKey = (not set): required" in message
    assert "plain" not in message.replace("plain text", "")


# 5. API endpoint


def test_ha_api_endpoint_is_a_load_balancer_in_the_certificate(secondary: Run) -> None:
    lb = secondary.one("hcloud:index/loadBalancer:LoadBalancer", "omantel-hel1-2-api-lb")
    service = secondary.one(
        "hcloud:index/loadBalancerService:LoadBalancerService", "omantel-hel1-2-api-lb-6443"
    )
    assert (service.inputs["listenPort"], service.inputs["destinationPort"]) == (6443, 6443)
    assert service.inputs["healthCheck"]["protocol"] == "tcp"
    assert lb.inputs["name"] == "omantel-hel1-2-api"
    lb_ip = secondary.outputs["apiLoadBalancerIp"]
    for n in (1, 2, 3):
        assert {lb_ip, "10.0.1.253"} <= set(k3s_config(server(secondary, n))["tls-san"])


def test_single_server_region_has_no_api_load_balancer(primary: Run) -> None:
    assert primary.outputs["apiLoadBalancerIp"] is None
    ip = primary.outputs["controlPlanePublicIps"][0]
    assert primary.outputs["apiServer"] == f"https://{ip}:6443"


# 6. Replacement


def test_allow_replacement_without_a_named_server_is_refused() -> None:
    run = evaluate("secondary", {"controlPlane": {"allowReplacement": True}})
    assert run.registrations == []
    assert "sovereign:replacement.server = (not set): required" in str(run.error)


def test_a_protected_server_is_unprotected_first_and_replaced_the_next_up() -> None:
    over = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-3"}}
    first = evaluate("secondary", over, live_servers=live("secondary", "v1.35.6+k3s1"))
    cp3 = server(first, 3)
    assert cp3.inputs["deleteProtection"] is False
    assert cp3.protect is False
    assert set(cp3.ignore_changes) == {"userData", "image", "sshKeys"}
    unprotected = live("secondary", "v1.35.6+k3s1")
    unprotected[2]["deleteProtection"] = False
    second = evaluate("secondary", over, live_servers=unprotected)
    assert server(second, 3).ignore_changes == []
    assert server(second, 3).delete_before_replace is True


def unprotected(stack: str) -> list[dict[str, Any]]:
    """A deployed region whose servers' Hetzner protection is already lifted."""
    servers = live(stack, "v1.35.6+k3s1")
    for entry in servers:
        entry["deleteProtection"] = False
    return servers


@pytest.mark.parametrize("named", [1, 2, 3])
def test_a_replacement_is_planned_for_exactly_the_named_server(named: int) -> None:
    baseline = evaluate("secondary", live_servers=unprotected("secondary"))
    over = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": f"cp-{named}"}}
    run = evaluate("secondary", over, live_servers=unprotected("secondary"))
    assert run.error is None, run.error
    for n in (1, 2, 3):
        before, now = server(baseline, n), server(run, n)
        if n == named:
            # A replacing input differs and is not ignored: Pulumi plans a replacement.
            assert now.inputs["userData"] != before.inputs["userData"]
            assert now.inputs["userData"].startswith(
                "#cloud-config\n# sovereign replacement generation: "
            )
            assert now.ignore_changes == []
            assert now.delete_before_replace is True
        else:
            # Byte-identical and ignored anyway: no change at all.
            assert now.inputs["userData"] == before.inputs["userData"]
            assert set(now.ignore_changes) == {"userData", "image", "sshKeys"}
    generation = run.one("random:index/randomId:RandomId", "omantel-hel1-2-replacement")
    assert generation.inputs["keepers"] == {"server": f"cp-{named}", "restoreSnapshot": ""}


def test_the_replaced_servers_node_and_etcd_member_go_first() -> None:
    over = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-2"}}
    run = evaluate("secondary", over, live_servers=unprotected("secondary"))
    removal = run.one("command:local:Command", "omantel-hel1-2-remove-cp-2")
    env = removal.inputs["environment"]
    assert env["SOVEREIGN_REMOVE_NODE"] == "omantel-hel1-2-cp-2"
    # Through the API load balancer, which reaches the two live servers.
    assert env["SOVEREIGN_API"] == f"https://{run.outputs['apiLoadBalancerIp']}:6443"
    assert "environment" in removal.secret_inputs
    generation = run.one("random:index/randomId:RandomId", "omantel-hel1-2-replacement")
    assert generation.urn in removal.dependencies, "runs again only for a new request"
    assert removal.urn in server(run, 2).dependencies
    assert removal.urn not in server(run, 1).dependencies + server(run, 3).dependencies
    assert [c.name for c in run.of_type("command:local:Command") if "remove" in c.name] == [
        "omantel-hel1-2-remove-cp-2"
    ]
    # The `up` that only lifts Hetzner's protection removes nothing yet.
    first = evaluate("secondary", over, live_servers=live("secondary", "v1.35.6+k3s1"))
    assert not [c for c in first.of_type("command:local:Command") if "remove" in c.name]


def test_node_removal_deletes_then_waits_until_the_node_is_gone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(wait_for_api, "_context", lambda *a: None)
    calls: list[str] = []
    answers = iter([200, 200, 404])

    def delete(url: str, context: Any) -> int:
        calls.append(f"DELETE {url}")
        return 200

    def get(url: str, context: Any) -> tuple[int, bytes]:
        calls.append(f"GET {url}")
        return next(answers), b""

    monkeypatch.setattr(wait_for_api, "_delete", delete)
    monkeypatch.setattr(wait_for_api, "_get", get)
    env = wait_env(SOVEREIGN_REMOVE_NODE="omantel-hel1-2-cp-2", SOVEREIGN_TIMEOUT="60")
    assert wait_for_api.remove(env, FakeClock()) == 0
    node = "https://127.0.0.1:9/api/v1/nodes/omantel-hel1-2-cp-2"
    assert calls == [f"DELETE {node}", f"GET {node}", f"GET {node}", f"GET {node}"]
    assert "omantel-hel1-2-cp-2 and its etcd member are removed" in capsys.readouterr().err
    # A node that never goes (k3s cannot remove the member) fails, bounded, with the way out.
    monkeypatch.setattr(wait_for_api, "_get", lambda url, context: (200, b""))
    assert wait_for_api.remove(env, FakeClock()) == 1
    assert "kubectl delete node omantel-hel1-2-cp-2" in capsys.readouterr().err


def test_single_server_replacement_needs_a_snapshot_to_restore() -> None:
    over = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-1"}}
    refused = evaluate("primary", over)
    assert "sovereign:replacement.restoreSnapshot = (not set): replacing the only server" in str(
        refused.error
    )
    restore = {
        **BACKUPS,
        **over,
        "replacement": {"server": "cp-1", "restoreSnapshot": "etcd-snapshot-cp-1-1700000000"},
    }
    run = evaluate("primary", restore)
    assert run.error is None, run.error
    files = files_of(run.one(SERVER))
    script = files["/root/k3s-restore.sh"]
    assert "snapshot=etcd-snapshot-cp-1-1700000000\n" in script
    assert 'k3s server --cluster-reset --etcd-s3 --cluster-reset-restore-path="$snapshot"' in script
    assert "--etcd-s3-endpoint=fsn1.your-objectstorage.com" in script
    assert "--etcd-s3-bucket=omantel-etcd" in script
    assert "userData" in run.one(SERVER).secret_inputs
    doc = yaml.safe_load(run.one(SERVER).inputs["userData"])
    # The gated script is runcmd's last item (its status is cloud-init's); nothing runs after it
    # and k3s is never started outside it.
    assert doc["runcmd"] == [
        ["systemctl", "restart", "ssh"],
        ["systemctl", "enable", "--now", "sovereign-k3s-cert-renew.timer"],
        ["systemctl", "enable", "--now", "sovereign-metadata-fence.service"],
        ["/root/k3s-restore.sh"],
    ]
    install = files["/usr/local/sbin/sovereign-k3s-install"]
    assert "INSTALL_K3S_SKIP_START=true INSTALL_K3S_SKIP_ENABLE=true" in install


RESTORE = {
    **BACKUPS,
    "controlPlane": {"allowReplacement": True},
    "replacement": {"server": "cp-1", "restoreSnapshot": "etcd-snapshot-cp-1-1700000000"},
}


def run_restore_script(tmp_path: Path, fail: str | None) -> tuple[int, str, list[str]]:
    """The rendered restore script under real bash, with stub commands first on PATH.

    Each stub appends its command line to a log; the one named `fail` exits 1.
    """
    raw = stack_config("primary")
    raw |= {
        "controlPlane": {**raw["controlPlane"], "allowReplacement": True},
        "backups": BACKUPS["backups"],
        "replacement": RESTORE["replacement"],
        "backupsAccessKey": "AKIA-restore-key",
        "backupsSecretKey": "restore-secret-value",
    }
    cfg = parse(raw, "primary", secret_keys=frozenset({"backupsAccessKey", "backupsSecretKey"}))

    script = tmp_path / "k3s-restore.sh"
    assert_shellcheck_clean(
        restore_script(
            cfg, "etcd-snapshot-cp-1-1700000000", ("AKIA-restore-key", "restore-secret-value")
        ),
        script,
    )
    script.chmod(0o700)
    stubs, log = tmp_path / "bin", tmp_path / "calls"
    stubs.mkdir()
    for name in ("sovereign-k3s-install", "k3s", "systemctl"):
        stub = stubs / name
        status = 1 if name == fail else 0
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"{log}"\nexit {status}\n')
        stub.chmod(0o755)
    done = subprocess.run(
        ["bash", str(script)],
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert not script.exists(), "the script holding the S3 keys must be gone"
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stderr, calls


def test_restore_starts_k3s_only_after_a_successful_restore(tmp_path: Path) -> None:
    status, _, calls = run_restore_script(tmp_path, fail=None)
    assert status == 0
    assert [call.split()[0] for call in calls] == ["sovereign-k3s-install", "k3s", "systemctl"]
    assert calls[1].startswith(
        "k3s server --cluster-reset --etcd-s3 "
        "--cluster-reset-restore-path=etcd-snapshot-cp-1-1700000000"
    )
    assert calls[2] == "systemctl enable --now k3s"


def test_a_failed_restore_never_starts_k3s_and_fails_cloud_init(tmp_path: Path) -> None:
    status, stderr, calls = run_restore_script(tmp_path, fail="k3s")
    assert status == 1, "runcmd's last item fails, so cloud-init reports status error"
    assert not any(call.startswith("systemctl") for call in calls)
    assert (
        "FAILED: restoring snapshot etcd-snapshot-cp-1-1700000000 from s3://omantel-etcd/fsn1"
        in (stderr)
    )
    assert "k3s was NOT started" in stderr
    assert "restore-secret-value" not in stderr


def test_no_restore_without_k3s_installed(tmp_path: Path) -> None:
    status, stderr, calls = run_restore_script(tmp_path, fail="sovereign-k3s-install")
    assert status == 1
    assert calls == ["sovereign-k3s-install "]
    assert "FAILED: k3s is not installed" in stderr


def test_a_server_beyond_the_count_is_refused() -> None:
    over = {"controlPlane": {"allowReplacement": True}, "replacement": {"server": "cp-3"}}
    message = str(evaluate("primary", {**BACKUPS, **over}).error)
    assert "sovereign:replacement.server = 'cp-3': this region has 1 server(s)" in message


def test_api_problems_are_listed_by_key() -> None:
    run = evaluate(
        "secondary",
        {"api": {"privateIp": "10.0.1.3", "renewBeforeDays": 400}},
    )
    message = str(run.error)
    assert "sovereign:api.privateIp = '10.0.1.3': a free host address of 10.0.1.0/24" in message
    assert "sovereign:api.renewBeforeDays = 400: fewer days than" in message


# Growing or shrinking a live region (issue 18 §2)


def test_growing_a_live_single_server_region_is_refused_with_the_steps() -> None:
    run = evaluate(
        "primary", {"controlPlane": {"count": 3}}, live_servers=live("primary", "v1.35.6+k3s1")
    )
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:controlPlane.count = 3: a live region keeps the server count" in message
    assert "GHSA-m4hf-6vgr-75r2" in message
    assert "Keep sovereign:controlPlane.count: 1" in message
    assert "docs/day2.md, 'Growing or shrinking a region'" in message
    # A new region may start with three.
    assert evaluate("primary", {"controlPlane": {"count": 3}}).error is None


def test_shrinking_a_live_ha_region_is_refused() -> None:
    run = evaluate(
        "secondary",
        {"controlPlane": {"count": 1}, "api": {"loadBalancer": True}},
        live_servers=live("secondary", "v1.35.6+k3s1"),
    )
    assert run.registrations == []
    assert "Keep sovereign:controlPlane.count: 3" in str(run.error)


def test_turning_the_api_load_balancer_on_for_a_live_region_is_refused(primary: Run) -> None:
    assert server(primary, 1).inputs["labels"]["openova.io/api-endpoint"] == "direct"
    servers = live("primary", "v1.35.6+k3s1")
    servers[0]["labels"]["openova.io/api-endpoint"] = "direct"
    run = evaluate("primary", {"api": {"loadBalancer": True}}, live_servers=servers)
    assert run.registrations == []
    assert "sovereign:api.loadBalancer = True: a live region keeps" in str(run.error)
    assert "Keep the API load balancer off" in str(run.error)
    # Unchanged, the same live region goes ahead.
    assert evaluate("primary", live_servers=servers).error is None


# Certificates that never lapse (issue 18 §3)


def test_every_server_checks_its_certificates_monthly_on_its_own_day(secondary: Run) -> None:
    days: list[str] = []
    for n in (1, 2, 3):
        files = files_of(server(secondary, n))
        timer = files["/etc/systemd/system/sovereign-k3s-cert-renew.timer"]
        calendar = next(line for line in timer.splitlines() if line.startswith("OnCalendar="))
        days.append(calendar)
        assert "Persistent=true" in timer
        service = files["/etc/systemd/system/sovereign-k3s-cert-renew.service"]
        assert "ExecStart=/usr/local/sbin/sovereign-k3s-cert-renew" in service
        runcmd = yaml.safe_load(server(secondary, n).inputs["userData"])["runcmd"]
        assert ["systemctl", "enable", "--now", "sovereign-k3s-cert-renew.timer"] in runcmd
        assert runcmd[-1] == ["/usr/local/sbin/sovereign-k3s-install"], "install stays last"
    # One server at a time: three different days.
    assert days == [
        "OnCalendar=*-*-01 03:00:00 UTC",
        "OnCalendar=*-*-08 03:00:00 UTC",
        "OnCalendar=*-*-15 03:00:00 UTC",
    ]


def run_cert_renew(tmp_path: Path, openssl_status: int) -> tuple[int, list[str]]:
    """The rendered check under real bash, on a fake certificate tree, with stub openssl."""
    from render.cloudinit import cert_renew_script

    tls, agent = tmp_path / "tls", tmp_path / "agent"
    (tls / "etcd").mkdir(parents=True)
    agent.mkdir()
    for path in (
        tls / "serving-kube-apiserver.crt",
        tls / "server-ca.crt",
        tls / "etcd" / "peer-ca.crt",
        agent / "client-kubelet.crt",
    ):
        path.write_text("PEM")
    script = tmp_path / "renew.sh"
    script.write_text(cert_renew_script(str(tls), str(agent)))
    stubs, log = tmp_path / "bin", tmp_path / "calls"
    stubs.mkdir()
    for name, status in (("openssl", openssl_status), ("systemctl", 0)):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"{log}"\nexit {status}\n')
        stub.chmod(0o755)
    done = subprocess.run(
        ["bash", str(script)],
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, log.read_text().splitlines() if log.exists() else []


def test_k3s_restarts_only_once_a_certificate_is_in_the_renewal_window(tmp_path: Path) -> None:
    status, calls = run_cert_renew(tmp_path / "fresh", openssl_status=0)
    assert status == 0
    assert not any(call.startswith("systemctl") for call in calls)
    checked = [call for call in calls if call.startswith("openssl")]
    assert all("-checkend 10368000" in call for call in checked), "120 days in seconds"
    assert len(checked) == 2, "the API server's and the kubelet's, never a CA"
    assert not any("-ca.crt" in call for call in checked)
    status, calls = run_cert_renew(tmp_path / "due", openssl_status=1)
    assert status == 0
    assert calls[-1] == "systemctl restart k3s"


def test_the_plan_states_each_certificates_expiry_and_renewal() -> None:
    from render.certificates import certificate_table
    from tools.plan import summary

    raw = stack_config("secondary")
    raw["api"] = {"clientCertDays": 200, "renewBeforeDays": 60}
    rows = {row["certificate"].split(" (")[0]: row for row in certificate_table(parse(raw))}
    deployer = rows["deployer client certificate"]
    assert deployer["validity"] == "200 days (sovereign:api.clientCertDays)"
    assert "any `up` in its last 60 days" in deployer["renewedBy"]
    leaf = rows["k3s leaf certificates on each server"]
    assert "cp-1 on day 1, cp-2 on day 8, cp-3 on day 15" in leaf["renewedBy"]
    assert "between day 245" in leaf["renewedBy"]
    plan = json.loads((Path(__file__).parent / "golden" / "secondary.json").read_text())
    text = summary(plan)
    assert "Certificates (when each expires, what renews it):" in text
    assert "sovereign-k3s-cert-renew.timer restarts k3s" in text
