"""JSON helpers shared by the plan, its diff and the fleet view (pure, no Pulumi import)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final, cast

SECRET: Final = "[secret]"
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def as_dict(value: object) -> dict[str, Any] | None:
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def as_list(value: object) -> list[Any] | None:
    return cast(list[Any], value) if isinstance(value, list) else None


def child_path(path: str, key: str) -> str:
    """`a.b`, or `a["openova.io/region"]` for keys that are not plain identifiers."""
    if _IDENT.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def normalise(value: Any) -> Any:
    """Integral floats (protobuf Structs carry every number as a double) back to ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if (mapping := as_dict(value)) is not None:
        return {key: normalise(item) for key, item in mapping.items()}
    if (items := as_list(value)) is not None:
        return [normalise(item) for item in items]
    return value


def strings(value: Any) -> Iterator[str]:
    """Every string leaf of a JSON value."""
    if isinstance(value, str):
        yield value
    elif (mapping := as_dict(value)) is not None:
        for item in mapping.values():
            yield from strings(item)
    elif (items := as_list(value)) is not None:
        for item in items:
            yield from strings(item)


def redact(value: Any, secret_paths: set[str], found: list[Any], path: str = "") -> Any:
    """Replace every value at a secret path with "[secret]"; collect the values replaced.

    Paths are rebuilt exactly as `tools.mockrun` wrote them (`a.b`, `a[0]`), so a secret can
    only ever be over-redacted (two nodes printing the same path), never missed.
    """
    if path in secret_paths:
        found.append(value)
        return SECRET
    if (mapping := as_dict(value)) is not None:
        return {
            key: redact(item, secret_paths, found, f"{path}.{key}" if path else key)
            for key, item in mapping.items()
        }
    if (items := as_list(value)) is not None:
        return [redact(item, secret_paths, found, f"{path}[{i}]") for i, item in enumerate(items)]
    return value


def scrub(value: Any, secrets: frozenset[str]) -> Any:
    """Defence in depth: a known secret string embedded anywhere else becomes "[secret]"."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, SECRET)
        return value
    if (mapping := as_dict(value)) is not None:
        return {key: scrub(item, secrets) for key, item in mapping.items()}
    if (items := as_list(value)) is not None:
        return [scrub(item, secrets) for item in items]
    return value


def dumps(value: Any) -> str:
    """The one serialisation of a plan: sorted keys, two-space indent, final newline."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def short_type(type_: str) -> str:
    """`hcloud:index/server:Server` -> `hcloud:Server`; providers -> `provider:kubernetes`."""
    parts = type_.split(":")
    if len(parts) == 3 and parts[0] == "pulumi" and parts[1] == "providers":
        return f"provider:{parts[2]}"
    if len(parts) == 3:
        return f"{parts[0]}:{parts[2]}"
    return type_
