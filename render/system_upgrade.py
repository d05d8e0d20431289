"""In-place k3s upgrades: the system-upgrade-controller release and the server Plan (pure).

`controlPlane.k3sVersion` is the Plan's version. Servers are upgraded one at a time and cordoned;
no server is ever replaced for an upgrade (their user_data is ignored). New servers install the
same pinned version from cloud-init, so a new server and an upgraded one agree.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

from config.models import StackConfig
from render.manifest_files import documents
from render.pins import DIGEST_MARK, UPSTREAM_DIR, pinned
from render.system_pods import SYSTEM_UPGRADE_CONTROLLER

DATA_FILE: Final = Path(__file__).with_name("system_upgrade.yaml")


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    sources: Path
    crd_file: Path
    controller_image: str
    namespace: str
    service_account: str
    upgrade_image: str
    control_plane_label: str


@functools.cache
def release() -> Release:
    data = cast(dict[str, Any], yaml.safe_load(DATA_FILE.read_text()))
    sources = UPSTREAM_DIR / str(data["sources"])
    return Release(
        version=str(data["version"]),
        sources=sources,
        crd_file=sources / str(data["crd_file"]),
        controller_image=str(data["controller_image"]),
        namespace=str(data["namespace"]),
        service_account=str(data["service_account"]),
        upgrade_image=str(data["upgrade_image"]),
        control_plane_label=str(data["control_plane_label"]),
    )


# Kinds kustomize's namespace transformer leaves alone: they have no namespace.
CLUSTER_SCOPED: Final = frozenset({"ClusterRole", "ClusterRoleBinding", "Namespace"})
BINDINGS: Final = frozenset({"ClusterRoleBinding", "RoleBinding"})


def _retag(pod_spec: dict[str, Any], image: str, tag: str) -> None:
    for key in ("initContainers", "containers"):
        for container in cast(list[dict[str, Any]], pod_spec.get(key) or []):
            name = str(container.get("image", ""))
            if name == image or name.startswith(f"{image}:") or name.startswith(f"{image}@"):
                container["image"] = pinned(f"{image}:{tag}")


# The controller's environment (its ConfigMap) names the image of the cordon and drain jobs; the
# controller uses the value as the container image as it is (rancher/system-upgrade-controller
# v0.20.1 pkg/upgrade/job/job.go: KubectlImage, the drain and cordon containers; commit f1362a3,
# checked 2026-12-04), so a digest there is pulled as such.
KUBECTL_IMAGE_KEY: Final = "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"


def _pin_job_images(config_map: dict[str, Any]) -> None:
    data = cast(dict[str, Any], config_map.get("data") or {})
    if data.get(KUBECTL_IMAGE_KEY):
        data[KUBECTL_IMAGE_KEY] = pinned(str(data[KUBECTL_IMAGE_KEY]))


def controller_objects() -> list[dict[str, Any]]:
    """What the release asset `system-upgrade-controller.yaml` holds, rebuilt from its sources.

    scripts/package-controller @ v0.20.1 runs `kustomize edit set image` (the controller image
    tagged with the release) and `kustomize build`; kustomize's namespace transformer puts every
    namespaced object into `namespace:` and every ServiceAccount subject of a binding with no
    namespace (or `default`) there too. Both files are verified by sha256 before use.
    """
    suc = release()
    kustomization = documents(suc.sources / "kustomization.yaml")[0]
    namespace = str(kustomization["namespace"])
    images = cast(list[dict[str, Any]], kustomization.get("images") or [])
    if [str(image.get("name")) for image in images] != [suc.controller_image]:
        raise ValueError(
            f"{suc.sources.name}/kustomization.yaml retags {images}; this rebuild sets only "
            f"{suc.controller_image} (re-read scripts/package-controller of the new release)"
        )
    objects: list[dict[str, Any]] = []
    for resource in cast(list[str], kustomization["resources"]):
        for doc in documents(suc.sources / resource):
            obj = copy.deepcopy(doc)
            kind = str(obj.get("kind"))
            if kind == "Namespace":
                obj["metadata"]["name"] = namespace
            if kind == "ConfigMap":
                _pin_job_images(obj)
            elif kind not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
            if kind in BINDINGS:
                for subject in cast(list[dict[str, Any]], obj.get("subjects") or []):
                    if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (
                        None,
                        "",
                        "default",
                    ):
                        subject["namespace"] = namespace
            pod = cast(dict[str, Any], obj.get("spec", {})).get("template", {}).get("spec")
            if isinstance(pod, dict):
                _retag(cast(dict[str, Any], pod), suc.controller_image, suc.version)
                # The release's Deployment asks for nothing; the scheduler must see it
                # (render/system_pods.py).
                spec = cast(dict[str, Any], pod)
                for container in cast(list[dict[str, Any]], spec.get("containers") or []):
                    container.setdefault("resources", {}).setdefault(
                        "requests", dict(SYSTEM_UPGRADE_CONTROLLER["requests"])
                    )
            objects.append(obj)
    return objects


def crd_objects() -> list[dict[str, Any]]:
    """The release asset `crd.yaml`: the Plan CRD file as is (verified by sha256)."""
    return documents(release().crd_file)


def upgrade_image(cfg: StackConfig) -> str:
    """The image of the Plans' upgrade (and prepare) step, as the Plans name it.

    The controller tags a name-only image with the Plan's version, '+' made '-'
    (pkg/upgrade/container/container.go WithLatestTag, pkg/upgrade/plan/plan.go MungeVersion,
    v0.20.1), and uses an image that has a tag or digest as it is. With a pinned digest the
    Plans name `<image>:<that tag>@sha256:...`; without, the bare name as before, so a region's
    Plans change only when a digest is filled. The Plan's digest (which decides whether nodes
    run the upgrade again) covers the version and service account, not the image (plan.go
    DigestStatus): pinning the image re-runs nothing.
    """
    suc = release()
    ref = job_upgrade_image(cfg)
    return ref if DIGEST_MARK in ref else suc.upgrade_image


def job_upgrade_image(cfg: StackConfig) -> str:
    """The reference the upgrade jobs pull: `<image>:<version, '+' made '-'>`, with its digest
    when pinned."""
    return pinned(f"{release().upgrade_image}:{version_label(cfg.control_plane.k3s_version)}")


def job_images(cfg: StackConfig, objects: list[dict[str, Any]]) -> list[str]:
    """Images the controller's jobs pull, named outside any pod template: cordon/drain (its
    ConfigMap, read from the objects it applies) and the upgrade itself (the Plans)."""
    kubectl = [
        str(data[KUBECTL_IMAGE_KEY])
        for obj in objects
        if obj.get("kind") == "ConfigMap"
        and (data := cast(dict[str, Any], obj.get("data") or {})).get(KUBECTL_IMAGE_KEY)
    ]
    return [*kubectl, job_upgrade_image(cfg)]


SERVER_PLAN_NAME: Final = "k3s-server"
AGENT_PLAN_NAME: Final = "k3s-agent"
# Hetzner label values allow [a-zA-Z0-9._-] only, so the k3s version's '+' becomes '-'.
VERSION_LABEL_KEY: Final = "openova.io/k3s-version"
# The Cilium chart version of the last release that succeeded, on the region's record
# (components/record.py): preflight reads it back (checks/upgrades.py).
CILIUM_LABEL_KEY: Final = "openova.io/cilium-version"
_CILIUM_LABEL = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


def cilium_from_label(value: str) -> str | None:
    return value if _CILIUM_LABEL.fullmatch(value) else None


# The Cilium minor the region was first installed with (`1.18`): Cilium's `upgradeCompatibility`
# value for every later minor (render/cilium.py). Read back at preview, never changed once set.
CILIUM_FIRST_LABEL_KEY: Final = "openova.io/cilium-first"
_CILIUM_MINOR = re.compile(r"^[0-9]+\.[0-9]+$")


def cilium_first_from_label(value: str) -> str | None:
    return value if _CILIUM_MINOR.fullmatch(value) else None


_VERSION = re.compile(r"^v1\.([0-9]+)\.([0-9]+)\+k3s([0-9]+)$")
_LABEL = re.compile(r"^v1\.([0-9]+)\.([0-9]+)-k3s([0-9]+)$")


def version_label(version: str) -> str:
    return version.replace("+", "-")


def version_from_label(value: str) -> str | None:
    """The k3s version a server label records, or None if the label is not one."""
    return value.replace("-k3s", "+k3s") if _LABEL.fullmatch(value) else None


def version_key(version: str) -> tuple[int, int, int]:
    """(minor, patch, k3s revision) of `v1.<minor>.<patch>+k3s<n>`."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"not a k3s release: {version!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def skew_refusal(deployed: str, wanted: str) -> str | None:
    """Why moving the servers from `deployed` to `wanted` breaks the skew policy, or None.

    Kubernetes requires kube-apiserver not to skip minor versions when upgrading, and k3s cannot
    go back. source: https://kubernetes.io/releases/version-skew-policy/ (kubernetes/website
    content/en/releases/version-skew-policy.md @ 0637786, checked 2026-11-27).
    """
    old, new = version_key(deployed), version_key(wanted)
    if new < old:
        return (
            f"a downgrade from the deployed {deployed}; k3s and etcd cannot go back (restore an "
            "etcd snapshot of the older version instead, see docs/day2.md 'Backup and restore')"
        )
    if new[0] > old[0] + 1:
        return (
            f"skips minor versions from the deployed {deployed}; upgrade one minor at a time "
            f"(next: a v1.{old[0] + 1}.x+k3sN release), as the Kubernetes skew policy requires"
        )
    return None


def server_plan(cfg: StackConfig) -> dict[str, Any]:
    """The Plan that moves every server to `controlPlane.k3sVersion`, one at a time."""
    suc = release()
    spec: dict[str, Any] = {
        # One server at a time keeps etcd quorum (2 of 3) through an HA upgrade.
        "concurrency": 1,
        "cordon": True,
        "nodeSelector": {
            "matchExpressions": [
                {"key": suc.control_plane_label, "operator": "In", "values": ["true"]}
            ]
        },
        "serviceAccountName": suc.service_account,
        "upgrade": {"image": upgrade_image(cfg)},
        "version": cfg.control_plane.k3s_version,
    }
    if cfg.upgrades.drain:
        # Off by default: a local-path volume pins each vCluster pod to its node, so evicting it
        # only stops the vCluster until the node is back; cordon alone keeps it running.
        spec["drain"] = {"force": True, "deleteEmptydirData": True, "ignoreDaemonSets": True}
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": SERVER_PLAN_NAME, "namespace": suc.namespace},
        "spec": spec,
    }


def agent_plan(cfg: StackConfig) -> dict[str, Any] | None:
    """The Plan that moves every worker to the same version, only after every server.

    Its `prepare` container runs `prepare k3s-server` before each agent's upgrade: the
    upgrade image waits there until the server Plan has upgraded every server (the Kubernetes
    skew policy: a kubelet is never newer than the apiserver). source: k3s-io/docs
    docs/upgrades/automated.md @ 6a6e7ba (the agent Plan example) and rancher/k3s-upgrade
    scripts/upgrade.sh (`prepare` waits for the named Plan's latestVersion on every node it
    selects); checked 2026-12-04. None without workers.
    """
    if not any(pool.most_servers for pool in cfg.workers.values()):
        return None
    suc = release()
    spec: dict[str, Any] = {
        "concurrency": cfg.upgrades.agent_concurrency,
        "cordon": True,
        "nodeSelector": {
            "matchExpressions": [{"key": suc.control_plane_label, "operator": "DoesNotExist"}]
        },
        "prepare": {"image": upgrade_image(cfg), "args": ["prepare", SERVER_PLAN_NAME]},
        "serviceAccountName": suc.service_account,
        "upgrade": {"image": upgrade_image(cfg)},
        "version": cfg.control_plane.k3s_version,
    }
    if cfg.upgrades.agent_drain:
        spec["drain"] = {"force": True, "deleteEmptydirData": True, "ignoreDaemonSets": True}
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": AGENT_PLAN_NAME, "namespace": suc.namespace},
        "spec": spec,
    }
