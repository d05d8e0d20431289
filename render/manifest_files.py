"""Vendored manifests (render/upstream/), read only after their sha256 is verified (pure).

`pulumi up` applies these files from the repository, never from a release URL; the offline
plan parses the same files to render and validate what `up` applies.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final, cast

import yaml

from render.cache import cached, key
from render.pins import UPSTREAM_DIR, pins, sha256, verified

PROJECT_DIR: Final = UPSTREAM_DIR.parent.parent
_Loader: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Bump when what is stored for a parsed file changes shape (part of the cache key).
CACHE_FORMAT: Final = 1


def project_path(path: Path) -> str:
    """`path` relative to the project: what the Kubernetes provider reads at `up` (Pulumi runs
    the program in the project directory), and the same on every machine, so state does not
    move between a laptop and CI."""
    resolved = path.resolve()
    return (
        resolved.relative_to(PROJECT_DIR).as_posix()
        if resolved.is_relative_to(PROJECT_DIR)
        else str(resolved)
    )


def pinned_files(prefix: str) -> list[Path]:
    """The vendored files whose pinned name starts with `prefix`, in name order."""
    return [UPSTREAM_DIR / name for name in sorted(pins(UPSTREAM_DIR)) if name.startswith(prefix)]


@functools.lru_cache(maxsize=32)
def _parse(path: str, digest: str) -> tuple[dict[str, Any], ...]:
    def compute() -> list[Any]:
        docs = yaml.load_all(Path(path).read_text(), Loader=_Loader)  # a safe loader
        return [doc for doc in docs if isinstance(doc, dict) and doc]

    stored = cached("manifest", key("manifest", CACHE_FORMAT, digest), compute)
    return tuple(cast("dict[str, Any]", doc) for doc in stored)


def documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a vendored file, after its sha256 is verified."""
    verified(path)
    return [dict(doc) for doc in _parse(str(path.resolve()), sha256(path))]


# The standard channel of a Gateway API release, plus its experimental TLSRoute: the one
# experimental CRD Cilium serves (the Gateway's TLS passthrough listener routes TLSRoutes).
GATEWAY_API_PREFIX: Final = "gateway-api-"


def gateway_api_files(version: str) -> list[Path]:
    """What `standard-install.yaml` of `version` holds, plus the experimental TLSRoute."""
    return pinned_files(f"{GATEWAY_API_PREFIX}{version}/")


def gateway_api_crds(version: str) -> list[dict[str, Any]]:
    return [doc for path in gateway_api_files(version) for doc in documents(path)]
