"""`sovereign:fleet`: how this region finds the rest of the fleet.

A model of its own so the fleet settings read apart from one region's; `config.models`
adds it to `StackConfig` as the `fleet` key.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import Field, field_validator

from config.base import ConfigModel

# Pulumi stack names: `stack`, `project/stack` or `org/project/stack`, each part of letters,
# digits, `-`, `_` or `.` (the CLI's own rule for stack names).
_STACK_REF: Final = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}")


class Fleet(ConfigModel):
    """Where this region's primary is, for the checks every secondary runs at preview."""

    primary_stack: str = Field(
        default="primary",
        description=(
            "Stack a secondary reads the primary's outputs from: `primary` (same backend and "
            "project) or `org/sovereign/primary`."
        ),
    )

    @field_validator("primary_stack")
    @classmethod
    def _stack_name(cls, value: str) -> str:
        if not _STACK_REF.fullmatch(value):
            raise ValueError(
                "a stack name: stack, project/stack or org/project/stack (letters, digits, "
                "'-', '_', '.')"
            )
        return value
