"""A content-addressed cache on disk for results that are pure functions of their inputs.

Rendering the three charts takes 0.5-0.8 s and validating the ~100 objects they render about as
long; both are functions of bytes that rarely change (a chart package, values, the validator's
version). The key is the sha256 of everything the result depends on, so an entry can only be
reused for exactly the same inputs and is never invalidated, only superseded. Entries live in
`.cache/sovereign/` beside the code (ignored by git); `SOVEREIGN_CACHE_DIR` moves the cache,
`SOVEREIGN_CACHE_DIR=` (empty) switches it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

DEFAULT_DIR: Final = Path(__file__).resolve().parent.parent / ".cache" / "sovereign"
T = TypeVar("T")


def cache_dir() -> Path | None:
    configured = os.environ.get("SOVEREIGN_CACHE_DIR")
    if configured is None:
        return DEFAULT_DIR
    return Path(configured) if configured else None


def key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cached(namespace: str, digest: str, compute: Callable[[], T]) -> T:
    """`compute()`, or its JSON result stored under `digest` by an earlier call."""
    directory = cache_dir()
    if directory is None:
        return compute()
    path = directory / namespace / f"{digest}.json"
    try:
        stored: Any = json.loads(path.read_text())
        return stored  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a parallel reader sees the whole entry or none.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(value, f)
        Path(f.name).replace(path)
    except OSError:
        pass  # a read-only checkout still works, only slower
    return value
