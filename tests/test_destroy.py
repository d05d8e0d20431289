"""Destroy and removals: every Kubernetes object is deleted with the cluster (issue 17 §2).

`deletedWith` (docs: pulumi.com/docs/iac/concepts/resources/options/deletedwith) skips a
resource's delete when the resource it names is deleted in the same operation. `engine_deletes`
applies that rule to two recorded programs: a resource the second one no longer declares is
deleted, through its provider unless its `deletedWith` resource goes too.
"""

from __future__ import annotations

from tools.mockrun import Registration, Run, SecretValue, evaluate

IDENTITY = "random:index/randomId:RandomId"


def identity_of(run: Run) -> Registration:
    """The cluster identity (the control plane has its own RandomId for replacements)."""
    return next(r for r in run.of_type(IDENTITY) if r.name.endswith("-cluster-id"))


PROVIDER = "pulumi:providers:kubernetes"
SERVER = "hcloud:index/server:Server"
RELEASE = "kubernetes:helm.sh/v3:Release"
BACKUPS = {
    "backups": {"enabled": True, "bucket": "omantel-etcd"},
    "backupsAccessKey": SecretValue("AKIA-fake-access-key-1234"),
    "backupsSecretKey": SecretValue("fake-secret-key-abcdefghijklmnop"),
}


def kubernetes_objects(run: Run) -> list[str]:
    return [r.urn for r in run.registrations if r.type.startswith("kubernetes:")]


def engine_deletes(before: Run, after: Run | None) -> tuple[set[str], set[str]]:
    """(deleted through the provider, skipped as deleted with another) from `before` to `after`."""
    kept = {r.urn for r in after.registrations} if after is not None else set[str]()
    gone = [r for r in before.registrations if r.urn not in kept]
    gone_urns = {r.urn for r in gone}
    skipped = {r.urn for r in gone if r.deleted_with and r.deleted_with in gone_urns}
    return gone_urns - skipped, skipped


def test_every_kubernetes_resource_is_deleted_with_the_cluster(
    primary: Run, secondary: Run
) -> None:
    backups = evaluate("primary", BACKUPS)
    assert backups.error is None, backups.error
    kinds: set[str] = set()
    for run in (primary, secondary, backups):
        identity = identity_of(run).urn
        for reg in run.registrations:
            if reg.type.startswith("kubernetes:"):
                kinds.add(reg.type)
                assert reg.deleted_with == identity, (reg.type, reg.name)
            else:
                # The servers, the provider and the identity itself are really deleted.
                assert reg.deleted_with == "", (reg.type, reg.name)
    assert {
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:core/v1:Namespace",
        "kubernetes:core/v1:Secret",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:cilium.io/v2:CiliumClusterwideNetworkPolicy",
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:upgrade.cattle.io/v1:Plan",
    } <= kinds


def test_a_destroy_deletes_the_servers_and_skips_every_kubernetes_delete(secondary: Run) -> None:
    deleted, skipped = engine_deletes(secondary, None)
    assert skipped == set(kubernetes_objects(secondary))
    assert {r.urn for r in secondary.of_type(SERVER)} <= deleted
    assert identity_of(secondary).urn in deleted
    assert secondary.one(PROVIDER).urn in deleted


def test_a_vcluster_switched_off_is_still_uninstalled_through_the_api(primary: Run) -> None:
    off = evaluate("primary", {"vclusters": {"dmz": {"enabled": False}}})
    assert off.error is None, off.error
    # The cluster stays: same identity, same inputs, so the engine neither deletes nor replaces it.
    assert identity_of(off).urn == identity_of(primary).urn
    assert identity_of(off).inputs == identity_of(primary).inputs
    deleted, skipped = engine_deletes(primary, off)
    assert skipped == set()
    slot = primary.one("sovereign:slot:VCluster", "slot-54-dmz-vcluster").urn
    dmz = {
        r.urn
        for r in primary.registrations
        if r.type.startswith("kubernetes:") and slot in {a.urn for a in primary.ancestors(r)}
    }
    # Exactly the DMZ slot's objects go, each through the API; nothing else is touched.
    assert deleted == dmz | {slot}
    assert primary.one(RELEASE, "slot-54-dmz-vcluster-release").urn in deleted
    assert primary.one("kubernetes:core/v1:Namespace", "slot-54-dmz-vcluster-ns").urn in deleted


def test_the_provider_applies_server_side_explicitly(primary: Run) -> None:
    assert primary.one(PROVIDER).inputs["enableServerSideApply"] == "true"
