"""Slot 02 values: cert-manager, with its CRDs kept when the release goes (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

from render.helm import RenderedObject
from render.manifests import pod_templates
from render.pins import digest_of
from render.system_pods import cert_manager_resources

# Where each component's image is in the chart's values (the controller's at the top level) and
# the repository the chart composes for it by default: `imageRegistry` quay.io + `imageNamespace`
# jetstack + `<component>.image.name`; the tag defaults to the chart's appVersion, which is the
# chart version (v1.21.1). The ACME solver runs only for HTTP-01 challenges, named to the
# controller by its `--acme-http01-solver-image` flag. source: the vendored
# render/charts/cert-manager-v1.21.1.tgz, values.yaml (imageRegistry, imageNamespace, *.image)
# and Chart.yaml (appVersion), checked 2026-12-04.
IMAGES: Final[Mapping[str, str]] = {
    "controller": "quay.io/jetstack/cert-manager-controller",
    "webhook": "quay.io/jetstack/cert-manager-webhook",
    "cainjector": "quay.io/jetstack/cert-manager-cainjector",
    "startupapicheck": "quay.io/jetstack/cert-manager-startupapicheck",
    "acmesolver": "quay.io/jetstack/cert-manager-acmesolver",
}


def image_values(repository: str, tag: str) -> dict[str, str]:
    """A component's `image` values: repository and tag always, the digest when it is pinned.

    The chart renders `repository:tag@digest` when both are set (templates/_helpers.tpl,
    `cert-manager.image`), so the tag stays beside the digest; the digest alone would drop it.
    """
    values = {"repository": repository, "tag": tag}
    if digest := digest_of(f"{repository}:{tag}"):
        values["digest"] = digest
    return values


def cert_manager_values(version: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        # keep: deleting the release must not delete every Certificate in the cluster with its
        # CRDs.
        "crds": {"enabled": True, "keep": True},
        **cert_manager_resources(),
    }
    for part, repository in IMAGES.items():
        image = {"image": image_values(repository, version)}
        if part == "controller":
            values.update(image)
        else:
            values[part] = {**values.get(part, {}), **image}
    return values


# The controller learns the ACME solver's image from this flag (templates/deployment.yaml).
SOLVER_FLAG: Final = "--acme-http01-solver-image="


def solver_images(objects: Iterable[RenderedObject]) -> list[str]:
    """The ACME HTTP-01 solver image the rendered controller is told to run."""
    found: list[str] = []
    for pod in pod_templates(objects):
        for container in cast("list[Mapping[str, Any]]", pod.spec.get("containers") or []):
            for arg in cast("list[object]", container.get("args") or []):
                if str(arg).startswith(SOLVER_FLAG):
                    found.append(str(arg).removeprefix(SOLVER_FLAG))
    return found
