"""Render a vendored chart with Helm's own Go SDK, in-process (pure; cached per chart and values).

`helm-python-sdk` binds Helm's official SDK through ctypes and ships the native library, so no
`helm` binary or network is involved: `Chart.load(tgz).render(values, name=, namespace=)` returns
`{template path: text}`. Helm also validates the values against the chart's values schema while
rendering, so a value the chart refuses fails here as it would in `helm install`.

Helm renders offline with its built-in default capabilities: `lookup` returns nothing and
`.Capabilities.APIVersions` holds only the built-in API groups (no CRDs), exactly as
`helm template` does without `--api-versions`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import yaml

from render.cache import cached, key

if TYPE_CHECKING:
    import helm_python

# One template's text may hold several documents; Helm separates them with `---` lines.
_SEPARATOR: Final = re.compile(r"^---.*$", re.MULTILINE)
_Loader: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Helm installs only these templates (NOTES.txt is shown to the user, not applied).
MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


# Part of every cache key: bump it whenever what is stored for a render changes shape.
CACHE_FORMAT: Final = 2


class RenderError(ValueError):
    """A chart could not be rendered with the given values (Helm's own message)."""


@dataclass(frozen=True, slots=True)
class RenderedObject:
    """One Kubernetes object a chart renders, with the template it came from."""

    template: str
    doc: Mapping[str, Any]
    release_namespace: str

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def name(self) -> str:
        return str(_meta(self.doc).get("name", ""))

    @property
    def namespace(self) -> str:
        """Where Helm installs it: its own namespace, else the release's."""
        return str(_meta(self.doc).get("namespace") or self.release_namespace)

    @property
    def ref(self) -> str:
        """`Kind/name`, as a reviewer searches for it."""
        return f"{self.kind}/{self.name}"


def _meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return cast("Mapping[str, Any]", meta) if isinstance(meta, Mapping) else {}


def split_documents(
    manifests: Mapping[str, str], release_namespace: str
) -> tuple[RenderedObject, ...]:
    """Every non-empty YAML document of every template, in template order."""
    objects: list[RenderedObject] = []
    for template in sorted(manifests):
        if not template.endswith(MANIFEST_SUFFIXES):
            continue
        for text in _SEPARATOR.split(manifests[template]):
            doc: object = yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader)
            if isinstance(doc, Mapping) and doc:
                objects.append(
                    RenderedObject(template, cast("Mapping[str, Any]", doc), release_namespace)
                )
    return tuple(objects)


@functools.lru_cache(maxsize=8)
def _chart(package: str) -> helm_python.Chart:
    import helm_python

    return helm_python.Chart.load(package)


def _helm_render(package: str, values_json: str, name: str, namespace: str) -> dict[str, str]:
    from helm_python import HelmError

    try:
        return _chart(package).render(json.loads(values_json), name=name, namespace=namespace)
    except HelmError as err:
        raise RenderError(f"{Path(package).name}: {err}") from None


@functools.lru_cache(maxsize=8)
def _package_digest(package: str) -> str:
    return hashlib.sha256(Path(package).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=128)
def _render(
    package: str, values_json: str, name: str, namespace: str
) -> tuple[RenderedObject, ...]:
    # Helm's output is a function of the package bytes, the values, the release's name and
    # namespace and Helm's own version: all of them are the key.
    digest = key(
        "helm-render",
        CACHE_FORMAT,
        _package_digest(package),
        values_json,
        name,
        namespace,
        _helm_version(),
    )
    # Stored as parsed documents: reading JSON back is ten times faster than parsing YAML.
    documents: list[list[Any]] = cached(
        "render",
        digest,
        lambda: [
            [obj.template, obj.doc]
            for obj in split_documents(
                _helm_render(package, values_json, name, namespace), namespace
            )
        ],
    )
    return tuple(
        RenderedObject(str(t), cast("Mapping[str, Any]", d), namespace) for t, d in documents
    )


@functools.cache
def _helm_version() -> str:
    return metadata.version("helm-python-sdk")


def render_chart(
    package: Path, values: Mapping[str, Any], *, name: str, namespace: str
) -> tuple[RenderedObject, ...]:
    """The objects `helm install NAME PACKAGE -n NAMESPACE` with `values` would create.

    Cached per (package, values, name, namespace): the tests, the plan and the fleet view
    render the same release many times and Helm takes 0.05-0.3 s per chart.
    """
    if not package.is_file():
        raise RenderError(
            f"{package.name} is not vendored in {package.parent}; a new pin needs its package: "
            "python -m tools.vendor refresh charts/" + package.name
        )
    return _render(str(package), json.dumps(values, sort_keys=True), name, namespace)
