"""A `Pulumi.<stack>.yaml` read for the offline tools, and the error they report to users."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast


class PlanError(Exception):
    """A plan could not be produced; the message is for the user (no traceback)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def read_stack_file(path: Path) -> dict[str, Any]:
    """A `Pulumi.<stack>.yaml` as a mapping, or a `PlanError` naming the file, line and column.

    PyYAML's own error names `"<unicode string>"` and comes with a traceback; the user needs
    where in which file to look.
    """
    import yaml

    try:
        text = path.read_text()
    except OSError as err:
        raise PlanError(f"cannot read {path.name}: {err.strerror}", code=2) from None
    try:
        doc: object = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = (
            f"{path.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else path.name
        )
        what = " ".join(part for part in (err.context, err.problem) if part)
        raise PlanError(
            f"{where}: not valid YAML (look at the indentation and quotes there): {what}", code=2
        ) from None
    except yaml.YAMLError as err:
        raise PlanError(f"{path.name}: not valid YAML: {err}", code=2) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(
        cast(dict[str, Any], doc).get("config", {}), dict
    ):
        raise PlanError(f"{path.name}: a mapping with a `config:` mapping inside", code=2)
    return cast(dict[str, Any], doc)
