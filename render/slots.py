"""THE slot table: what a region deploys, in which order, waiting for what (DoD A4).

Role gating and ordering live only here, as data. `components.slots` maps each slot number to
the component that builds it and turns the table's edges into explicit `depends_on`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from config.models import Role, StackConfig, VClusterName

EVERY_REGION: Final[frozenset[Role]] = frozenset({"primary", "secondary"})
PRIMARY: Final[frozenset[Role]] = frozenset({"primary"})
SECONDARY: Final[frozenset[Role]] = frozenset({"secondary"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    number: int
    release: str
    after: tuple[int, ...]
    roles: frozenset[Role]
    vcluster: VClusterName | None = None

    @property
    def resource_name(self) -> str:
        return f"slot-{self.number:02d}-{self.release}"


SLOTS: Final[tuple[Slot, ...]] = (
    Slot(number=1, release="cilium", after=(), roles=EVERY_REGION),
    Slot(number=2, release="cert-manager", after=(1,), roles=EVERY_REGION),
    # In-place k3s upgrades. Needs only pod networking; nothing waits for it, so a first `up`
    # is not slowed and a later version bump does not hold back a chart change.
    Slot(number=3, release="system-upgrade", after=(1,), roles=EVERY_REGION),
    Slot(number=54, release="dmz-vcluster", after=(1, 2), roles=EVERY_REGION, vcluster="dmz"),
    Slot(number=58, release="mgmt-vcluster", after=(1, 2), roles=PRIMARY, vcluster="mgmt"),
    Slot(number=59, release="rtz-vcluster", after=(1, 2), roles=SECONDARY, vcluster="rtz"),
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
