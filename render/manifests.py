"""What rendered objects hold: pod templates, images and their registries, kinds (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from render.helm import RenderedObject

# Where each workload kind keeps its pod template.
POD_TEMPLATE_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")
# A reference without a registry host is pulled from Docker Hub (the Docker reference grammar:
# the first component is a host only if it has a dot or a port, or is `localhost`).
DEFAULT_REGISTRY: Final = "docker.io"


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """One pod a workload will create, with where it came from."""

    owner: RenderedObject
    path: str  # key path of the pod spec inside the object, e.g. spec.template.spec
    spec: Mapping[str, Any]


def pod_templates(objects: Iterable[RenderedObject]) -> list[PodTemplate]:
    found: list[PodTemplate] = []
    for obj in objects:
        keys = POD_TEMPLATE_PATHS.get(obj.kind)
        if keys is None:
            continue
        node: Mapping[str, Any] = obj.doc
        for key in keys:
            node = _map(node.get(key))
        found.append(PodTemplate(obj, ".".join((*keys, "spec")), _map(node.get("spec"))))
    return found


@dataclass(frozen=True, slots=True)
class ImageUse:
    image: str
    owner: RenderedObject
    path: str  # e.g. spec.template.spec.initContainers[0].image


def image_uses(objects: Iterable[RenderedObject]) -> list[ImageUse]:
    return pod_image_uses(pod_templates(objects))


def pod_image_uses(pods: Iterable[PodTemplate]) -> list[ImageUse]:
    uses: list[ImageUse] = []
    for pod in pods:
        for key in CONTAINER_LISTS:
            for index, container in enumerate(_list(pod.spec.get(key))):
                image = _map(container).get("image")
                if isinstance(image, str):
                    uses.append(ImageUse(image, pod.owner, f"{pod.path}.{key}[{index}].image"))
    return uses


def images(objects: Iterable[RenderedObject]) -> list[str]:
    """Every image the rendered workloads pull, sorted, once each."""
    return sorted({use.image for use in image_uses(objects)})


def registry_of(image: str) -> str:
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def is_pinned(image: str) -> bool:
    """A digest, or an explicit tag other than `latest` (which moves under the same name)."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    return bool(colon) and bool(tag) and tag != "latest"


def kinds(objects: Iterable[RenderedObject]) -> dict[str, int]:
    """Objects counted by kind, sorted by kind."""
    return dict(sorted(Counter(obj.kind for obj in objects).items()))
