"""`./sovereign e2e`'s check logic on recorded API responses (tests/data/e2e/README.md).

The live run needs a Hetzner project and cannot run here; what it concludes from each API
answer, how its waits end and what its sweep deletes are tested on these responses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tools import e2e_checks as checks
from tools.e2e import throwaway_config
from tools.stacks import read_stack_file

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "e2e"
PSS = {"enforce": "baseline", "audit": "restricted", "warn": "restricted"}


def recorded(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def cluster_checks(doc: dict[str, Any], servers: int) -> list[checks.Check]:
    return [
        checks.nodes_ready(doc["nodes"], servers),
        checks.cilium_ready(doc["cilium"], doc["ciliumOperator"]),
        checks.webhook_answers(doc["webhookError"]),
        *(
            checks.vcluster_ready(vc, doc["statefulsets"][vc], doc["namespaces"][vc], PSS)
            for vc in ("dmz", "mgmt")
        ),
        checks.a4_count("primary", list(doc["statefulsets"].values())),
        checks.metadata_blocked(doc["metadataProbe"]["pod"], doc["metadataProbe"]["log"]),
        checks.upgrade_plan(doc["plans"], "k3s-server"),
        checks.backup_snapshot(doc["snapshots"]),
    ]


def test_a_ready_cluster_passes_every_check() -> None:
    results = cluster_checks(recorded("ready"), servers=1)
    assert [c for c in results if not c.ok] == []
    assert results[0].detail == "1/1 Ready"
    assert results[3].detail == "1/1, enforce=baseline, audit=restricted, warn=restricted"


def test_a_crash_looping_vcluster_fails_its_row_and_says_why() -> None:
    doc = recorded("crashloop")
    results = {c.name: c for c in cluster_checks(doc, servers=1)}
    assert not results["vCluster mgmt"].ok
    assert results["vCluster mgmt"].detail == "StatefulSet 0/1 ready"
    assert results["vCluster dmz"].ok
    assert checks.why_not_ready(doc["mgmtPods"]) == (
        "mgmt-vcluster-0/syncer: CrashLoopBackOff (restarts 7)"
    )
    # The same recording has a webhook refusing connections and a pod reaching the metadata.
    assert not results["cert-manager webhook answers"].ok
    assert 'failed calling webhook \\"webhook.cert-manager.io\\"' in (
        results["cert-manager webhook answers"].detail
    )
    assert results["metadata 169.254.169.254 blocked"] == checks.Check(
        "metadata 169.254.169.254 blocked", False, "a pod reached it"
    )


def test_a_notready_node_fails_nodes_and_cilium() -> None:
    results = {c.name: c for c in cluster_checks(recorded("notready"), servers=3)}
    assert results["nodes Ready"] == checks.Check(
        "nodes Ready", False, "not Ready: omantel-fsn1-cp-2"
    )
    assert results["Cilium agents and operator"].detail == "agents 2/3, operator 1/1"
    assert not results["Cilium agents and operator"].ok


def test_missing_nodes_and_wrong_pod_security_labels_fail() -> None:
    doc = recorded("ready")
    assert checks.nodes_ready(doc["nodes"], 3).detail == "1 node(s), expected 3"
    strict = {**PSS, "enforce": "restricted"}
    check = checks.vcluster_ready(
        "dmz", doc["statefulsets"]["dmz"], doc["namespaces"]["dmz"], strict
    )
    assert not check.ok
    assert check.detail == "pod-security.kubernetes.io/enforce=baseline (asked restricted)"
    assert not checks.vcluster_ready("rtz", None, None, PSS).ok


def test_the_a4_count_follows_the_role() -> None:
    doc = recorded("ready")
    statefulsets = list(doc["statefulsets"].values())
    assert checks.a4_count("primary", statefulsets).ok
    secondary = checks.a4_count("secondary", statefulsets)
    assert not secondary.ok
    assert secondary.detail == "secondary: found dmz, mgmt, want dmz, rtz"


def test_no_snapshot_in_the_bucket_and_no_plan_fail() -> None:
    doc = recorded("ready")
    local_only = {"items": [i for i in doc["snapshots"]["items"] if not i["spec"].get("s3")]}
    assert checks.backup_snapshot(local_only) == checks.Check(
        "etcd snapshot in the bucket", False, "none uploaded (1 snapshot(s))"
    )
    assert not checks.upgrade_plan({"items": []}, "k3s-server").ok


def test_the_sweep_takes_labelled_leftovers_older_than_the_bound_in_delete_order() -> None:
    now = datetime(2026, 12, 4, 6, 30, tzinfo=UTC)
    found = checks.leftovers(recorded("hetzner_leftovers"), now, timedelta(hours=6))
    assert [(f.collection, f.name) for f in found] == [
        ("servers", "e2e12030410ab12-fsn1-cp-1"),
        ("primary_ips", "e2e12030410ab12-fsn1-cp-1-ipv4"),
        ("placement_groups", "e2e12030410ab12-fsn1-cp"),
        ("firewalls", "e2e12030410ab12-fsn1"),
        ("ssh_keys", "e2e12030410ab12-fsn1-deployer"),
        ("networks", "e2e12030410ab12-fsn1"),
    ]
    # The recent run (17 minutes old) and the unlabelled real server are never touched.
    assert all(f.test_run == "e2e-12030410ab12" for f in found)
    later = checks.leftovers(recorded("hetzner_leftovers"), now, timedelta(minutes=10))
    assert "e2e12040612cd34-fsn1" in [f.name for f in later]
    assert "omantel-fsn1-cp-1" not in [f.name for f in later]
    kept = checks.leftovers(
        recorded("hetzner_leftovers"), now, timedelta(minutes=10), keep="e2e-12040612cd34"
    )
    assert "e2e12040612cd34-fsn1" not in [f.name for f in kept]
    assert "omantel-fsn1-cp-1" not in [f.name for f in kept]


def test_a_run_deletes_its_autoscalers_servers_before_the_destroy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from checks.preflight import parse
    from tools import e2e
    from tools.mockrun import stack_config

    raw = {**stack_config("secondary"), "name": "e2e12040612cd34"}
    cfg = parse(raw, "secondary")
    calls: list[tuple[str, str]] = []

    def answer(method: str, path: str, token: str) -> dict[str, Any]:
        calls.append((method, path))
        return recorded("hetzner_autoscaled") if method == "GET" else {}

    monkeypatch.setattr(e2e, "hetzner", answer)
    check = e2e.delete_autoscaled("token", cfg)
    assert check.ok
    # Asked by the provider's own label for the run's node group; only that group's servers go.
    assert calls[0] == (
        "GET",
        "/servers?label_selector=hcloud/node-group%3De2e12040612cd34-hel1-2-burst&page=1",
    )
    assert calls[1:] == [("DELETE", "/servers/71230001"), ("DELETE", "/servers/71230002")]
    assert check.detail == "2 deleted (e2e12040612cd34-hel1-2-burst)"


def test_a_server_that_will_not_delete_fails_the_check_by_name_and_the_others_still_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from checks.preflight import parse
    from tools import e2e
    from tools.mockrun import stack_config

    cfg = parse({**stack_config("secondary"), "name": "e2e12040612cd34"}, "secondary")
    deleted: list[str] = []

    def answer(method: str, path: str, token: str) -> dict[str, Any]:
        if method == "GET":
            return recorded("hetzner_autoscaled")
        if path == "/servers/71230001":
            raise RuntimeError("409 locked")
        deleted.append(path)
        return {}

    monkeypatch.setattr(e2e, "hetzner", answer)
    check = e2e.delete_autoscaled("token", cfg)
    assert not check.ok
    assert deleted == ["/servers/71230002"]
    assert check.detail.startswith("1 deleted (e2e12040612cd34-hel1-2-burst); not deleted: ")
    assert "e2e12040612cd34-hel1-2-burst-5f2c1e9a0b7d3c41: 409 locked" in check.detail


def test_a_wait_is_bounded_and_names_what_it_waited_for() -> None:
    clock = [0.0]
    seen: list[str] = []

    def probe() -> tuple[bool, str]:
        seen.append("x")
        if len(seen) == 1:
            raise ConnectionRefusedError("connection refused")
        return False, "agents 0/1"

    with pytest.raises(checks.WaitTimeoutError) as err:
        checks.wait_for(
            "Cilium agents and operator",
            probe,
            seconds=60,
            interval=10,
            clock=lambda: clock[0],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        )
    assert str(err.value) == "waited 60 s for Cilium agents and operator; last: agents 0/1"
    assert len(seen) == 7
    done = checks.wait_for(
        "x", lambda: (True, "ok"), seconds=1, interval=1, clock=lambda: 0.0, sleep=lambda _: None
    )
    assert done == "ok"


def test_the_table_has_one_row_per_check() -> None:
    text = checks.table(
        [checks.Check("nodes Ready", True, "1/1 Ready"), checks.Check("destroy", False, "boom")]
    )
    assert text.splitlines() == [
        "check        result  detail",
        "nodes Ready  ok      1/1 Ready",
        "destroy      FAIL    boom",
    ]


def test_the_throwaway_stack_is_labelled_unprotected_and_named_apart() -> None:
    raw = read_stack_file(ROOT / "Pulumi.primary.yaml")["config"]
    config = throwaway_config(raw, "e2e-12040612cd34", "12040612cd34")
    assert config["sovereign:name"] == "e2e12040612cd34"
    assert config["sovereign:testRun"] == "e2e-12040612cd34"
    assert config["sovereign:controlPlane"]["protect"] is False
    assert raw["sovereign:controlPlane"].get("protect") is not False  # the file is untouched
    from checks.preflight import parse

    cfg = parse({k.removeprefix("sovereign:"): v for k, v in config.items()}, "e2e")
    assert cfg.test_run == "e2e-12040612cd34"


def test_every_hetzner_resource_of_a_test_run_carries_the_label() -> None:
    from tools.mockrun import evaluate

    run = evaluate("primary", {"testRun": "e2e-12040612cd34"})
    assert run.error is None, run.error
    labelled = [
        r for r in run.registrations if r.type.startswith("hcloud:") and "labels" in r.inputs
    ]
    assert labelled
    for reg in labelled:
        assert reg.inputs["labels"]["openova.io/test-run"] == "e2e-12040612cd34", reg.name


def test_e2e_help_documents_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.e2e", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    for words in ("--stack-file", "--keep", "--sweep-hours", "169.254.169.254", "destroyed"):
        assert words in proc.stdout


def test_e2e_refuses_without_a_token_and_with_a_secondary(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.e2e import main

    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    assert main([]) == 2
    monkeypatch.setenv("HCLOUD_TOKEN", "t")
    assert main(["--stack-file", str(ROOT / "Pulumi.secondary.yaml")]) == 2


def test_the_throwaway_stack_gets_both_hetzner_tokens_as_secrets() -> None:
    from tools.e2e import config_values

    raw = read_stack_file(ROOT / "Pulumi.primary.yaml")["config"]
    # An operator's file with the cluster token set: its ciphertext is never copied.
    raw = {**raw, "sovereign:hcloudToken": {"secure": "v1:ciphertextOfAnotherStack"}}
    config = throwaway_config(raw, "e2e-12040612cd34", "12040612cd34")
    assert "sovereign:hcloudToken" not in config
    values = config_values(config, "tok-" + "t" * 60)
    for key in ("hcloud:token", "sovereign:hcloudToken"):
        assert values[key].value == "tok-" + "t" * 60, key
        assert values[key].secret is True, key
    assert not any("secure" in v.value for v in values.values())
    assert all(not v.secret for k, v in values.items() if not k.endswith(("token", "Token")))
    # What up would see: the program's own config check passes with the key present
    # (load_config refuses a missing one; mockrun's stand-in is not in play here).
    from config.models import parse_config

    plain = {
        k.removeprefix("sovereign:"): json.loads(v.value) if v.value[:1] in "{[" else v.value
        for k, v in values.items()
        if k.startswith("sovereign:")
    }
    secret = frozenset(k.removeprefix("sovereign:") for k, v in values.items() if v.secret)
    parse_config(plain, "e2e", secret & set(plain), required_secrets=True)


def test_the_throwaway_stack_refuses_another_encrypted_key_by_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.e2e import main

    doc = read_stack_file(ROOT / "Pulumi.primary.yaml")
    doc["config"]["sovereign:backupsSecretKey"] = {"secure": "v1:ciphertextOfAnotherStack"}
    stack_file = tmp_path / "Pulumi.op.yaml"
    stack_file.write_text(json.dumps(doc))
    monkeypatch.setenv("HCLOUD_TOKEN", "t")
    assert main(["--stack-file", str(stack_file)]) == 2
    err = capsys.readouterr().err
    assert "sovereign:backupsSecretKey: an encrypted value" in err
    assert "ciphertextOfAnotherStack" not in err
