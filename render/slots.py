"""THE slot table: what a region deploys, in which order, waiting for what (DoD A4).

Role gating and ordering live only here, as data. `components.slots` maps each slot number to
the component that builds it and turns the table's edges into explicit `depends_on`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from config.models import Role, StackConfig, VClusterName
from render import autoscaler

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
    # A slot that a setting switches off in its roles (the CCM with sovereign:cloudController,
    # the autoscaler without autoscaled pools).
    when: Callable[[StackConfig], bool] | None = None

    @property
    def resource_name(self) -> str:
        return f"slot-{self.number:02d}-{self.release}"


def _hetzner_ccm(cfg: StackConfig) -> bool:
    return cfg.cloud_controller == "hetzner"


SLOTS: Final[tuple[Slot, ...]] = (
    Slot(number=1, release="cilium", after=(), roles=EVERY_REGION),
    # Every slot below runs after 04 where it is on: with kubelet cloud-provider=external each
    # node carries the `uninitialized` taint until the CCM has initialised it, and only Cilium
    # (which tolerates every taint) and the CCM itself schedule before that. The CCM runs after
    # Cilium: its chart tolerates `not-ready` only for NoExecute, so it waits for Ready nodes.
    Slot(number=2, release="cert-manager", after=(1, 4), roles=EVERY_REGION),
    # In-place k3s upgrades. Needs pod networking and initialised nodes; nothing waits for it,
    # so a first `up` is not slowed and a later version bump does not hold back a chart change.
    Slot(number=3, release="system-upgrade", after=(1, 4), roles=EVERY_REGION),
    # Hetzner cloud controller manager: providerID, node addresses, LoadBalancer Services.
    Slot(number=4, release="hcloud-ccm", after=(1,), roles=EVERY_REGION, when=_hetzner_ccm),
    # Hetzner CSI driver: the `hcloud-volumes` StorageClass a vCluster's data may live on.
    Slot(number=5, release="hcloud-csi", after=(1, 4), roles=EVERY_REGION),
    # cluster-autoscaler, only where some worker pool sets `autoscaling`: it creates and deletes
    # those pools' servers. After 04: it finds a node's server by the providerID the CCM sets
    # (render/cluster_autoscaler.yaml), and a node still `uninitialized` schedules nothing.
    # Nothing waits for it (pods that wait for room wait in the scheduler, not in the graph).
    Slot(
        number=6,
        release="cluster-autoscaler",
        after=(1, 4),
        roles=EVERY_REGION,
        when=autoscaler.enabled,
    ),
    # Each vCluster after its volumes can be provisioned (05) and cert-manager (02).
    Slot(number=54, release="dmz-vcluster", after=(1, 2, 5), roles=EVERY_REGION, vcluster="dmz"),
    Slot(number=58, release="mgmt-vcluster", after=(1, 2, 5), roles=PRIMARY, vcluster="mgmt"),
    Slot(number=59, release="rtz-vcluster", after=(1, 2, 5), roles=SECONDARY, vcluster="rtz"),
)


def declaration_order(slots: tuple[Slot, ...]) -> tuple[Slot, ...]:
    """Each slot after every slot it waits for, else by number (04 comes before 02 and 03).

    A slot's number is its place in the platform's catalogue, not its place in the graph: the
    CCM is 04, yet 02 and 03 wait for it.
    """
    numbers = {slot.number for slot in slots}
    placed: list[Slot] = []
    done: set[int] = set()
    while len(placed) < len(slots):
        ready = [
            s
            for s in slots
            if s.number not in done and all(n in done or n not in numbers for n in s.after)
        ]
        if not ready:
            raise ValueError(f"the slot table has a cycle among {sorted(numbers - done)}")
        first = min(ready, key=lambda s: s.number)
        placed.append(first)
        done.add(first.number)
    return tuple(placed)


def slot_enabled(slot: Slot, cfg: StackConfig) -> bool:
    """In its role's regions a slot runs unless its vCluster is switched off explicitly."""
    if cfg.region.role not in slot.roles:
        return False
    if slot.when is not None and not slot.when(cfg):
        return False
    return slot.vcluster is None or cfg.vclusters.spec(slot.vcluster).enabled is not False


def active_slots(cfg: StackConfig) -> tuple[Slot, ...]:
    """The region's slots in declaration order, each waiting only for the slots that run here."""
    on = {slot.number for slot in SLOTS if slot_enabled(slot, cfg)}
    return declaration_order(
        tuple(
            replace(slot, after=tuple(n for n in slot.after if n in on))
            for slot in SLOTS
            if slot.number in on
        )
    )


def active_vclusters(cfg: StackConfig) -> list[VClusterName]:
    return [slot.vcluster for slot in active_slots(cfg) if slot.vcluster is not None]
