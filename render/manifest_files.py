"""Vendored manifests (render/upstream/), parsed from the very bytes whose sha256 was verified.

`pulumi up` applies these files from the repository, never from a release URL; the offline
plan parses the same files to render and validate what `up` applies. Nothing parsed is kept on
disk: a stored parse would be data that no pin covers (an edited or stale cache entry would
change what `up` applies), and parsing costs about 10 ms for the upgrade controller's files and
60 ms for a Gateway API release with libyaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, cast

import yaml

from render.pins import UPSTREAM_DIR, pins, verified_bytes

PROJECT_DIR: Final = UPSTREAM_DIR.parent.parent
_Loader: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Parsed documents per sha256 of the bytes they were parsed from, for this process only.
_parsed: dict[str, tuple[dict[str, Any], ...]] = {}


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


def documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a vendored file, parsed from the bytes that matched its
    pinned sha256 (read once: nothing can change between the check and the parse)."""
    data, digest = verified_bytes(path)
    parsed = _parsed.get(digest)
    if parsed is None:
        docs = yaml.load_all(data, Loader=_Loader)  # a safe loader
        parsed = tuple(cast("dict[str, Any]", doc) for doc in docs if isinstance(doc, dict) and doc)
        _parsed[digest] = parsed
    return [dict(doc) for doc in parsed]


# The standard channel of a Gateway API release, plus its experimental TLSRoute: the one
# experimental CRD Cilium serves (the Gateway's TLS passthrough listener routes TLSRoutes).
GATEWAY_API_PREFIX: Final = "gateway-api-"


def gateway_api_files(version: str) -> list[Path]:
    """What `standard-install.yaml` of `version` holds, plus the experimental TLSRoute."""
    return pinned_files(f"{GATEWAY_API_PREFIX}{version}/")


def gateway_api_crds(version: str) -> list[dict[str, Any]]:
    return [doc for path in gateway_api_files(version) for doc in documents(path)]
