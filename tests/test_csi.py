"""Issue 19 §3: the Hetzner CSI driver (slot 05), a vCluster's data class, volumes in one
location; and the metadata exception that exactly its node plugin needs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from checks.network_policy import allowed, entity, load, pod
from checks.preflight import parse
from checks.rendered import RenderedRelease, mirror_problems, render_releases, schema_problems
from config.errors import SovereignConfigError
from config.models import StackConfig
from render.cilium import metadata_deny_policies
from render.hcloud import CSI_CHART, CSI_RELEASE, HCLOUD_SECRET, HCLOUD_VOLUMES, TOKEN_KEY
from render.manifests import image_uses, pod_templates, registry_of
from render.metadata_fence import HCLOUD_CSI_NODE_LABELS, METADATA_POD_EXCEPTIONS
from render.metadata_fence import MetadataPodException as Exempt
from render.pins import unpinned_images
from tools.mockrun import Run, evaluate, stack_config
from tools.plan import declared_objects

RELEASE = "kubernetes:helm.sh/v3:Release"
SERVER = "hcloud:index/server:Server"
METADATA = entity("metadata", "169.254.169.254")


def cfg(stack: str, **overrides: Any) -> StackConfig:
    return parse({**stack_config(stack), **overrides}, stack)


def csi(stack: str = "secondary", **overrides: Any) -> RenderedRelease:
    return next(r for r in render_releases(cfg(stack, **overrides)) if r.spec.name == CSI_RELEASE)


# --- slot 05, rendered -------------------------------------------------------------------------


def test_the_csi_values_are_valid_against_the_charts_values_schema() -> None:
    schema = json.loads(CSI_CHART.values_schema.read_text())
    for stack in ("primary", "secondary"):
        values = csi(stack).spec.values
        jsonschema.Draft202012Validator(schema).validate(values)
    # The schema is not vacuous: a type it forbids is refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"node": {"kubeletDir": 5}})


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_the_rendered_csi_objects_are_valid_for_the_pinned_kubernetes_minor(stack: str) -> None:
    release = csi(stack)
    kinds = {o.kind for o in release.objects}
    assert {"CSIDriver", "StorageClass", "Deployment", "DaemonSet"} <= kinds
    assert schema_problems(cfg(stack), [release]) == []


def test_the_storage_class_is_hetzners_and_not_a_second_default() -> None:
    sc = next(o for o in csi().objects if o.kind == "StorageClass")
    assert sc.name == HCLOUD_VOLUMES
    assert sc.doc["provisioner"] == "csi.hetzner.cloud"
    # Volumes are created where the pod lands (one location), and survive a deleted claim.
    assert sc.doc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc.doc["reclaimPolicy"] == "Retain"
    default = "storageclass.kubernetes.io/is-default-class"
    assert sc.doc["metadata"]["annotations"][default] == "false"


def test_the_controller_reads_the_one_secret_and_the_regions_location() -> None:
    controller = next(o for o in csi().objects if o.kind == "Deployment")
    env = {
        e["name"]: e.get("value", e.get("valueFrom"))
        for c in controller.doc["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert env["HCLOUD_TOKEN"] == {"secretKeyRef": {"name": HCLOUD_SECRET, "key": TOKEN_KEY}}
    assert env["HCLOUD_VOLUME_DEFAULT_LOCATION"] == "hel1"


def test_the_node_plugin_runs_on_every_pool_whatever_its_taints() -> None:
    node = next(o for o in csi().objects if o.kind == "DaemonSet")
    spec = node.doc["spec"]["template"]["spec"]
    assert {"effect": "NoSchedule", "operator": "Exists"} in spec["tolerations"]
    assert {"effect": "NoExecute", "operator": "Exists"} in spec["tolerations"]
    # On the pod network, which is why Cilium must leave it out of the metadata deny.
    assert not spec.get("hostNetwork")
    labels = node.doc["spec"]["template"]["metadata"]["labels"]
    assert HCLOUD_CSI_NODE_LABELS.items() <= labels.items()


def test_every_csi_image_goes_through_the_mirror_and_is_listed_until_pinned() -> None:
    mirrored = cfg("secondary", registryMirror={"enabled": True})
    release = next(r for r in render_releases(mirrored) if r.spec.name == CSI_RELEASE)
    images = sorted({use.image for use in image_uses(release.objects)})
    assert {registry_of(i) for i in images} == {"docker.io", "registry.k8s.io"}
    assert "docker.io/hetznercloud/hcloud-csi-driver:v2.22.1" in images
    assert {registry_of(i) for i in images} <= set(mirrored.registry_mirror.projects)
    assert mirror_problems(mirrored, [release]) == []
    assert len(unpinned_images({CSI_RELEASE: images})) == len(images)


def test_every_csi_container_asks_for_cpu_and_memory() -> None:
    for template in pod_templates(csi().objects):
        for container in template.spec["containers"]:
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}


# --- the metadata exception: the CSI node plugin and nothing else -----------------------------


def deny_policies(run: Run) -> list[Any]:
    return load(
        doc for _, doc in declared_objects(run) if doc["kind"] == "CiliumClusterwideNetworkPolicy"
    )


@pytest.fixture(scope="module")
def secondary() -> Run:
    run = evaluate("secondary")
    assert run.error is None, run.error
    return run


CSI_NODE = dict(HCLOUD_CSI_NODE_LABELS, **{"app.kubernetes.io/instance": "hcloud-csi"})
# (pod, reaches the metadata service)
EXCEPTION_TABLE = [
    (pod("hcloud-csi-node", "kube-system", **CSI_NODE), True),
    # The controller of the same chart: its location comes from the API, not the metadata.
    (
        pod(
            "hcloud-csi-controller",
            "kube-system",
            **{"app.kubernetes.io/name": "hcloud-csi", "app.kubernetes.io/component": "controller"},
        ),
        False,
    ),
    # A tenant copying the labels, in every zone and in a namespace of its own.
    (pod("fake-csi", "dmz", **CSI_NODE), False),
    (pod("fake-csi", "rtz", **CSI_NODE), False),
    (pod("fake-csi", "tenant-x", **CSI_NODE), False),
    # kube-system with one label off, or none.
    (pod("half", "kube-system", **{"app.kubernetes.io/component": "node"}), False),
    (
        pod(
            "other-name",
            "kube-system",
            **{"app.kubernetes.io/name": "x", **{"app.kubernetes.io/component": "node"}},
        ),
        False,
    ),
    (pod("metrics-server", "kube-system", **{"k8s-app": "metrics-server"}), False),
    (pod("coredns", "kube-system", **{"k8s-app": "kube-dns"}), False),
    # cert-manager, the upgrade controller: not on the list.
    (pod("cert-manager", "cert-manager", **{"app.kubernetes.io/name": "cert-manager"}), False),
    (pod("suc", "system-upgrade", **{"upgrade.cattle.io/controller": "system-upgrade"}), False),
]


@pytest.mark.parametrize(
    ("source", "reaches"), EXCEPTION_TABLE, ids=lambda v: getattr(v, "name", "")
)
def test_only_the_csi_node_plugin_reaches_the_metadata_service(
    source: Any, reaches: bool, secondary: Run
) -> None:
    assert allowed(deny_policies(secondary), source, METADATA, 80) is reaches


def test_every_exception_names_its_source_and_the_denies_are_built_from_them() -> None:
    assert [e.labels for e in METADATA_POD_EXCEPTIONS] == [HCLOUD_CSI_NODE_LABELS]
    assert all(e.source and e.what for e in METADATA_POD_EXCEPTIONS)
    # Without exceptions the deny selects every pod, the CSI node plugin included.
    bare = load(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": n},
            "spec": s,
        }
        for n, s in metadata_deny_policies(())
    )
    assert not allowed(bare, EXCEPTION_TABLE[0][0], METADATA, 80)


def test_two_exceptions_in_one_namespace_exempt_only_their_own_label_sets() -> None:
    exempt = (
        Exempt(what="a", namespace="kube-system", labels={"app": "a"}, source="s"),
        Exempt(what="b", namespace="kube-system", labels={"app": "b"}, source="s"),
    )
    loaded = load(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": n},
            "spec": s,
        }
        for n, s in metadata_deny_policies(exempt)
    )
    assert allowed(loaded, pod("a", "kube-system", app="a"), METADATA, 80)
    assert allowed(loaded, pod("b", "kube-system", app="b"), METADATA, 80)
    assert not allowed(loaded, pod("c", "kube-system", app="c"), METADATA, 80)
    assert not allowed(loaded, pod("a", "dmz", app="a"), METADATA, 80)
    with pytest.raises(ValueError, match="more than one namespace"):
        metadata_deny_policies((*exempt, Exempt(what="c", namespace="x", labels={}, source="s")))


# --- a vCluster's data class ----------------------------------------------------------------------


def vcluster_values(run: Run, name: str) -> dict[str, Any]:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == name).inputs["values"]


def test_each_vcluster_chooses_its_data_class_and_waits_for_the_csi_driver(
    secondary: Run,
) -> None:
    claim = vcluster_values(secondary, "dmz-vcluster")["controlPlane"]["statefulSet"][
        "persistence"
    ]["volumeClaim"]
    assert claim == {"enabled": True, "size": "10Gi", "storageClass": HCLOUD_VOLUMES}
    dmz = next(r for r in secondary.of_type(RELEASE) if r.inputs["name"] == "dmz-vcluster")
    driver = next(r for r in secondary.of_type(RELEASE) if r.inputs["name"] == CSI_RELEASE)
    assert driver.urn in dmz.dependencies
    local = evaluate("secondary", {"vclusters": {"rtz": {"storageClass": "local-path"}}})
    assert local.error is None, local.error
    rtz = vcluster_values(local, "rtz-vcluster")["controlPlane"]["statefulSet"]
    assert rtz["persistence"]["volumeClaim"]["storageClass"] == "local-path"
    assert rtz["persistence"]["volumeClaim"]["size"] == "5Gi"
    server = local.one(SERVER, "omantel-hel1-2-1")
    assert server.inputs["labels"]["openova.io/vcluster-rtz-storage"] == "local-path"
    assert server.inputs["labels"]["openova.io/vcluster-dmz-storage"] == HCLOUD_VOLUMES
    assert server.inputs["labels"]["openova.io/vcluster-mgmt-storage"] == "none"


def test_an_unknown_data_class_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(SovereignConfigError) as err:
        cfg("primary", vclusters={"dmz": {"storageClass": "ssd"}})
    message = str(err.value)
    assert "sovereign:vclusters.dmz.storageClass = 'ssd'" in message
    assert "'hcloud-volumes'" in message
    assert "'local-path'" in message


def live_primary(storage: str | None) -> list[dict[str, Any]]:
    labels = {
        "openova.io/k3s-version": "v1.35.6-k3s1",
        "openova.io/k3s-boot": "init",
        "openova.io/cloud-controller": "hetzner",
        "openova.io/vcluster-mgmt": "rootless",
        "openova.io/vcluster-dmz": "rootless",
        "openova.io/vcluster-rtz": "none",
        "openova.io/vcluster-mgmt-storage": HCLOUD_VOLUMES,
    }
    if storage is not None:
        labels["openova.io/vcluster-dmz-storage"] = storage
    return [{"name": "omantel-fsn1-cp-1", "labels": labels, "deleteProtection": True}]


def test_a_live_vcluster_keeps_its_data_class() -> None:
    # Created before hcloud-volumes (no label): its data is on local-path.
    run = evaluate("primary", live_servers=live_primary(None))
    assert run.registrations == []
    message = str(run.error)
    assert (
        "sovereign:vclusters.dmz.storageClass = 'hcloud-volumes': the DMZ vCluster of this "
        "live region keeps its data on local-path (server omantel-fsn1-cp-1 has no "
        "openova.io/vcluster-dmz-storage label)"
    ) in message
    assert "Set sovereign:vclusters.dmz.storageClass: local-path" in message
    kept = evaluate(
        "primary",
        {"vclusters": {"dmz": {"storageClass": "local-path"}}},
        live_servers=live_primary(None),
    )
    assert kept.error is None, kept.error
    assert evaluate("primary", live_servers=live_primary(HCLOUD_VOLUMES)).error is None
    # A vCluster never deployed there may start on either class.
    fresh = live_primary(HCLOUD_VOLUMES)
    fresh[0]["labels"]["openova.io/vcluster-dmz"] = "none"
    fresh[0]["labels"]["openova.io/vcluster-dmz-storage"] = "local-path"
    assert evaluate("primary", live_servers=fresh).error is None


# --- volumes live in one location ---------------------------------------------------------------


def test_a_pool_in_another_location_is_refused_for_the_vclusters_volumes() -> None:
    with pytest.raises(SovereignConfigError) as err:
        cfg(
            "secondary",
            workers={"general": {"serverType": "cpx32", "count": 2, "location": "fsn1"}},
        )
    message = str(err.value)
    assert (
        "sovereign:workers.general.location = 'fsn1': a pool lives in the region's location, "
        "'hel1' (sovereign:region.location)"
    ) in message
    assert "the DMZ, RTZ vCluster(s) on hcloud-volumes could be scheduled away" in message
    # Repeating the region's location is allowed.
    same = cfg(
        "secondary",
        workers={"general": {"serverType": "cpx32", "count": 2, "location": "hel1"}},
    )
    assert same.workers["general"].location == "hel1"
