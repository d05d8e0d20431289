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
_STACK_REF_HELP: Final = (
    "a stack name: stack, project/stack or org/project/stack (letters, digits, '-', '_', '.')"
)


class Fleet(ConfigModel):
    """Where this region's primary is, for the checks every secondary runs at preview."""

    primary_stack: str = Field(
        default="primary",
        description=(
            "Stack a secondary reads the primary's outputs from: `primary` (same backend and "
            "project) or `org/sovereign/primary`."
        ),
    )

    wireguard_peers: list[str] = Field(
        default_factory=list[str],
        max_length=20,
        description=(
            "Stacks whose servers may reach this region's Cilium WireGuard port (UDP 51871), "
            "read by stack reference; a secondary always includes its primary. The primary "
            "lists its secondaries once they are up."
        ),
    )

    @field_validator("primary_stack")
    @classmethod
    def _stack_name(cls, value: str) -> str:
        if not _STACK_REF.fullmatch(value):
            raise ValueError(_STACK_REF_HELP)
        return value

    @field_validator("wireguard_peers")
    @classmethod
    def _peer_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _STACK_REF.fullmatch(name)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: {_STACK_REF_HELP}")
        return value
