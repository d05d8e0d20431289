"""Kubernetes objects against the OpenAPI schema of the cluster's minor (kubernetes-validate).

`kubernetes-validate` ships the JSON schemas of every Kubernetes minor, generated from the
upstream OpenAPI documents, in a strict variant that refuses unknown fields (what the API
server's strict field validation refuses). Its own `validate()` re-reads the 1.3 MB definitions
file for every object; here the schemas are loaded once per minor and kind, and each object's
result is cached on disk by content (`render.cache`), so an unchanged plan validates nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from render.cache import cached, key

if TYPE_CHECKING:
    import jsonschema

# Bump when the way errors are computed or reported here changes (part of the cache key).
CHECK_VERSION: Final = 1


class UnknownKindError(LookupError):
    """No schema for this apiVersion/kind in the cluster's minor (a custom resource)."""


@functools.cache
def _schemas_dir() -> Path:
    # Located without importing the package, which pulls in jsonschema and more on import.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("kubernetes-validate is not installed (requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def _key(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest.split(".")[0])


@functools.lru_cache(maxsize=16)
def schema_minor(k8s_version: str) -> str:
    """The newest minor with schemas not newer than `k8s_version` (v1.31.4+k3s1 -> 1.31.0)."""
    wanted = _key(k8s_version.removeprefix("v"))
    known = sorted(
        (
            path.name.removeprefix("v").removesuffix("-local-strict")
            for path in _schemas_dir().glob("v*-local-strict")
        ),
        key=_key,
    )
    fitting = [version for version in known if _key(version) <= wanted]
    if not fitting:
        raise UnknownKindError(f"kubernetes-validate has no schemas for Kubernetes {k8s_version}")
    return fitting[-1]


def _schema_file(version: str, api_version: str, kind: str) -> Path:
    # The package's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1.
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return _schemas_dir() / f"v{version}-local-strict" / f"{kind.lower()}-{group}.json"


@functools.lru_cache(maxsize=256)
def _validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    import jsonschema
    from referencing import Registry, Resource

    schema = json.loads(_schema_file(version, api_version, kind).read_text())
    definitions = _schemas_dir() / f"v{version}-local-strict" / "_definitions.json"
    empty: Registry[Any] = Registry()
    registry = empty.with_resources(
        (str(doc.get("$id", "")), Resource.from_contents(doc))
        for doc in (json.loads(definitions.read_text()), schema)
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _errors(obj: Mapping[str, Any], version: str) -> list[list[str]]:
    validator = _validator(version, str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    found: list[list[str]] = []
    errors: list[jsonschema.ValidationError] = list(
        validator.iter_errors(obj)  # pyright: ignore[reportUnknownMemberType]
    )
    for error in sorted(errors, key=lambda e: list(map(str, e.path))):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        found.append([path.lstrip(".") or "(object)", error.message])
    return found


def schema_errors(obj: Mapping[str, Any], k8s_version: str) -> list[tuple[str, str]]:
    """(key path, message) of every way `obj` breaks its kind's strict schema.

    Raises `UnknownKindError` for a kind the built-in API does not have.
    """
    version = schema_minor(k8s_version)
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    if not _schema_file(version, api_version, kind).is_file():
        raise UnknownKindError(f"no Kubernetes {version} schema for {api_version} {kind}")
    digest = key("k8s-schema", CHECK_VERSION, _schemas_dir().parent.name, version, obj)
    return [
        (path, message) for path, message in cached("schema", digest, lambda: _errors(obj, version))
    ]
