"""THE slot table: what a region deploys, in which order, waiting for what (DoD A4).

Role gating and ordering live only here. `build_slots` turns the table into components whose
Helm releases carry the table's edges as explicit `depends_on`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi

from components.cert_manager import CertManager, CertManagerArgs
from components.cilium import Cilium, CiliumArgs
from components.config import Role, StackConfig, VClusterName
from components.errors import Problem
from components.vcluster import VClusterArgs, VClusterSlot

Build = Callable[
    [str, StackConfig, Sequence[pulumi.Resource], pulumi.ResourceOptions],
    pulumi.ComponentResource,
]

EVERY_REGION: Final[frozenset[Role]] = frozenset({"primary", "secondary"})
PRIMARY: Final[frozenset[Role]] = frozenset({"primary"})
SECONDARY: Final[frozenset[Role]] = frozenset({"secondary"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    number: int
    release: str
    after: tuple[int, ...]
    roles: frozenset[Role]
    build: Build
    vcluster: VClusterName | None = None

    @property
    def resource_name(self) -> str:
        return f"slot-{self.number:02d}-{self.release}"


def _cilium(
    name: str, cfg: StackConfig, after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return Cilium(name, CiliumArgs(cfg=cfg, after=after), opts)


def _cert_manager(
    name: str, cfg: StackConfig, after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return CertManager(name, CertManagerArgs(cfg=cfg, after=after), opts)


def _vcluster(vcluster: VClusterName) -> Build:
    def build(
        name: str, cfg: StackConfig, after: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions
    ) -> pulumi.ComponentResource:
        return VClusterSlot(name, VClusterArgs(cfg=cfg, vcluster=vcluster, after=after), opts)

    return build


SLOTS: Final[tuple[Slot, ...]] = (
    Slot(number=1, release="cilium", after=(), roles=EVERY_REGION, build=_cilium),
    Slot(number=2, release="cert-manager", after=(1,), roles=EVERY_REGION, build=_cert_manager),
    Slot(
        number=54,
        release="dmz-vcluster",
        after=(1, 2),
        roles=EVERY_REGION,
        build=_vcluster("dmz"),
        vcluster="dmz",
    ),
    Slot(
        number=58,
        release="mgmt-vcluster",
        after=(1, 2),
        roles=PRIMARY,
        build=_vcluster("mgmt"),
        vcluster="mgmt",
    ),
    Slot(
        number=59,
        release="rtz-vcluster",
        after=(1, 2),
        roles=SECONDARY,
        build=_vcluster("rtz"),
        vcluster="rtz",
    ),
)


def slot_enabled(slot: Slot, cfg: StackConfig) -> bool:
    """In its role's regions a slot runs unless its vCluster is switched off explicitly."""
    if cfg.region.role not in slot.roles:
        return False
    return slot.vcluster is None or cfg.vclusters.spec(slot.vcluster).enabled is not False


def active_slots(cfg: StackConfig) -> tuple[Slot, ...]:
    return tuple(slot for slot in SLOTS if slot_enabled(slot, cfg))


def active_vclusters(cfg: StackConfig) -> list[VClusterName]:
    return [slot.vcluster for slot in active_slots(cfg) if slot.vcluster is not None]


def gating_problems(cfg: StackConfig) -> list[Problem]:
    """A vCluster switched on outside its role's regions is an error, never silently dropped."""
    problems: list[Problem] = []
    for slot in SLOTS:
        if slot.vcluster is None or cfg.region.role in slot.roles:
            continue
        if cfg.vclusters.spec(slot.vcluster).enabled:
            roles = " and ".join(sorted(slot.roles))
            problems.append(
                Problem(
                    f"sovereign:vclusters.{slot.vcluster}.enabled",
                    "true",
                    f"{slot.vcluster.upper()} (slot {slot.number}) runs only in {roles} regions "
                    f"and this is a {cfg.region.role} (DoD A4: primary = MGMT + DMZ, each "
                    "secondary = DMZ + RTZ); remove the key",
                )
            )
    return problems


def build_slots(
    cfg: StackConfig, provider: pulumi.ProviderResource
) -> dict[int, pulumi.ComponentResource]:
    """Declare this region's slots in table order, each waiting for the slots it runs after."""
    built: dict[int, pulumi.ComponentResource] = {}
    for slot in active_slots(cfg):
        after = [built[number] for number in slot.after]
        opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
        built[slot.number] = slot.build(slot.resource_name, cfg, after, opts)
    return built
