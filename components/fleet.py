"""A secondary's link to its primary: the primary's outputs through a StackReference, checked.

The engine reads the referenced stack at preview as well as at `pulumi up`, so a region that
would break the fleet (a second primary, a reused index, overlapping CIDRs, the wrong vClusters
for DoD A4) fails before anything changes, with the keys and both stacks named. Secondaries
cannot see each other this way; `./sovereign plan --all` and `./sovereign up --all` check every
pair before they start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pulumi

from checks.fleet import (
    FLEET_OUTPUTS,
    FleetError,
    check_against_primary,
    summary_from_outputs,
    summary_of,
)
from config.models import StackConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class PrimaryReferenceArgs:
    cfg: StackConfig
    stack: str  # this stack's name, as the error names it


class PrimaryReference(pulumi.ComponentResource):
    """The primary's fleet outputs, checked against this region's config."""

    TYPE: Final = "sovereign:fleet:PrimaryReference"

    def __init__(
        self, name: str, args: PrimaryReferenceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        target = args.cfg.fleet.primary_stack
        own = summary_of(args.cfg, args.stack)
        self.reference = pulumi.StackReference(
            f"{name}-primary", stack_name=target, opts=pulumi.ResourceOptions(parent=self)
        )
        values = [self.reference.get_output(key) for key in FLEET_OUTPUTS]

        def check(read: list[Any]) -> str:
            outputs: dict[str, Any] = dict(zip(FLEET_OUTPUTS, read, strict=True))
            primary = summary_from_outputs(target, outputs)
            problems = check_against_primary(own, primary, outputs)
            if problems:
                raise FleetError(own.stack, target, problems)
            return primary.key

        # The primary's region key, resolved only once every check passed.
        self.primary_key: pulumi.Output[str] = pulumi.Output.all(*values).apply(check)
        # What the region's first component waits on: the reference, once the check passed. A
        # failed check fails that registration, so nothing of the region is created.
        self.gate = pulumi.ResourceOptions(
            depends_on=[self.primary_key.apply(lambda _key: self.reference)]
        )
        self.register_outputs({"primaryKey": self.primary_key})
