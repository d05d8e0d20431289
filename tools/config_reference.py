"""The configuration table of docs/configuration.md, generated from the pydantic models (one
source of truth).

Run `./sovereign config-reference` to print it; a test fails when docs/configuration.md drifts
from it.
"""

from __future__ import annotations

import json
import sys
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.models import NAMESPACE, StackConfig, VCluster, VClusters

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map"
    if origin is Annotated:
        return _type_name(args[0])
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _map_of_model(annotation: Any) -> type[BaseModel] | None:
    """The value model of `dict[str, Model]`, else None."""
    if get_origin(annotation) is not dict:
        return None
    value = get_args(annotation)[1]
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value
    return None


def _optional_model(annotation: Any) -> type[BaseModel] | None:
    """The model of `Model | None` (an object a key may leave unset), else None."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    rest = [a for a in get_args(annotation) if a is not type(None) and a not in models]
    return models[0] if len(models) == 1 and not rest else None


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, BaseModel) or value is PydanticUndefined:
        return "(object)"
    return "`" + json.dumps(value) + "`"


def _rows(model: type[BaseModel], path: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{field.alias or name}" if path else f"{NAMESPACE}:{field.alias or name}"
        annotation = field.annotation
        if annotation is VClusters:
            # mgmt, dmz and rtz share one shape: document it once.
            rows.extend(_rows(VCluster, f"{key}.<mgmt\\|dmz\\|rtz>"))
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, key))
            continue
        optional = _optional_model(annotation)
        if optional is not None:
            # An object that may be left unset (a pool's autoscaling): the object, then its keys.
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | object or null | {_default(field)} | {description} |")
            rows.extend(_rows(optional, key))
            continue
        value_model = _map_of_model(annotation)
        if value_model is not None:
            # A map of named objects (worker pools): the map, then one shape for its entries.
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | map | {_default(field)} | {description} |")
            rows.extend(_rows(value_model, f"{key}.<name>"))
            continue
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(annotation)} | {_default(field)} | {description} |")
    return rows


def table() -> str:
    header = ["| key | type | default | what it means |", "|---|---|---|---|"]
    return "\n".join([*header, *_rows(StackConfig, "")])


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
