"""A secondary's link to its primary: the primary's outputs through a StackReference, checked.

The engine reads the referenced stack at preview as well as at `pulumi up`, so a region that
would break the fleet (a second primary, a reused index, overlapping CIDRs, the wrong vClusters
for DoD A4) fails before anything changes, with the keys and both stacks named. Secondaries
cannot see each other this way; `./sovereign plan --all` and `./sovereign up --all` check every
pair before they start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import pulumi

from checks.fleet import (
    FLEET_OUTPUTS,
    FleetError,
    check_against_primary,
    summary_from_outputs,
    summary_of,
)
from config.models import StackConfig

# The output every region exports with its servers' public IPv4s (__main__.py).
SERVER_ADDRESSES_OUTPUT: Final = "controlPlanePublicIps"


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


def host_cidrs(addresses: object) -> list[str]:
    """`a.b.c.d/32` per address a stack exported; nothing for a stack that exported none."""
    if not isinstance(addresses, list):
        return []
    return [f"{address}/32" for address in cast(list[object], addresses) if address]


@dataclass(frozen=True, slots=True, kw_only=True)
class WireGuardPeersArgs:
    stacks: Sequence[str]


class WireGuardPeers(pulumi.ComponentResource):
    """The other regions' server addresses, read by stack reference, for the WireGuard rule."""

    TYPE: Final = "sovereign:fleet:WireGuardPeers"

    def __init__(
        self, name: str, args: WireGuardPeersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        addresses: list[pulumi.Output[Any]] = []
        for stack in args.stacks:
            reference = pulumi.StackReference(
                f"{name}-{stack.replace('/', '-')}",
                stack_name=stack,
                opts=pulumi.ResourceOptions(parent=self),
            )
            addresses.append(reference.get_output(SERVER_ADDRESSES_OUTPUT))
        self.sources: pulumi.Output[list[str]] = pulumi.Output.all(*addresses).apply(
            lambda read: sorted({cidr for value in read for cidr in host_cidrs(value)})
        )
        self.register_outputs({"sources": self.sources})
