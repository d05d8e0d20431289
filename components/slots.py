"""The slot table's builders: each slot number becomes the component that deploys it.

Ordering and role gating are data in `render.slots`; here each active slot is declared in
dependency order, its Helm release waiting explicitly for the slots it runs after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi

from components.autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.cert_manager import CertManager, CertManagerArgs
from components.cilium import Cilium, CiliumArgs
from components.hcloud import CloudController, CloudControllerArgs, CsiDriver
from components.kubeconfig import NodeWait
from components.system_upgrade import SystemUpgrade, SystemUpgradeArgs
from components.vcluster import VClusterArgs, VClusterSlot
from components.workers import WorkerPool
from config.models import StackConfig, VClusterName
from render.autoscaler import autoscaled_pools
from render.slots import active_slots


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotInputs:
    """What a slot's component waits for: the slots it runs after, and the nodes to be Ready."""

    after: Sequence[pulumi.Resource]
    nodes: NodeWait | None = None
    # The Cilium minor the region was first installed with (render/cilium.upgrade_compatibility).
    cilium_first: str | None = None
    # Secret kube-system/hcloud (the cluster's Hetzner token), for the slots that read it.
    hcloud_secret: pulumi.Resource | None = None
    # The worker pools by name: the autoscaler (slot 06) hands on the autoscaled pools' boot.
    workers: Mapping[str, WorkerPool] = field(default_factory=dict[str, WorkerPool])


Build = Callable[[str, StackConfig, SlotInputs, pulumi.ResourceOptions], pulumi.ComponentResource]


def _cilium(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return Cilium(
        name,
        CiliumArgs(cfg=cfg, after=slot.after, nodes=slot.nodes, first_line=slot.cilium_first),
        opts,
    )


def _cert_manager(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return CertManager(name, CertManagerArgs(cfg=cfg, after=slot.after), opts)


def _system_upgrade(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return SystemUpgrade(name, SystemUpgradeArgs(cfg=cfg, after=slot.after), opts)


def _cloud_controller(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return CloudController(
        name, CloudControllerArgs(cfg=cfg, after=slot.after, secret=slot.hcloud_secret), opts
    )


def _csi_driver(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    return CsiDriver(
        name, CloudControllerArgs(cfg=cfg, after=slot.after, secret=slot.hcloud_secret), opts
    )


def _vcluster(vcluster: VClusterName) -> Build:
    def build(
        name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
    ) -> pulumi.ComponentResource:
        return VClusterSlot(name, VClusterArgs(cfg=cfg, vcluster=vcluster, after=slot.after), opts)

    return build


def _cluster_autoscaler(
    name: str, cfg: StackConfig, slot: SlotInputs, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    pools = [slot.workers[pool] for pool in autoscaled_pools(cfg)]
    return ClusterAutoscaler(
        name,
        ClusterAutoscalerArgs(
            cfg=cfg,
            after=slot.after,
            cloud_init={pool: slot.workers[pool].user_data for pool in autoscaled_pools(cfg)},
            hetzner=[resource for pool in pools for resource in pool.provider_needs],
            secret=slot.hcloud_secret,
        ),
        opts,
    )


# One builder per row of render.slots.SLOTS (a test keeps the two in step).
BUILDERS: Final[Mapping[int, Build]] = {
    1: _cilium,
    2: _cert_manager,
    3: _system_upgrade,
    4: _cloud_controller,
    5: _csi_driver,
    6: _cluster_autoscaler,
    54: _vcluster("dmz"),
    58: _vcluster("mgmt"),
    59: _vcluster("rtz"),
}


def build_slots(
    cfg: StackConfig,
    provider: pulumi.ProviderResource,
    ready: Sequence[pulumi.Resource] = (),
    nodes: NodeWait | None = None,
    cilium_first: str | None = None,
    hcloud_secret: pulumi.Resource | None = None,
    workers: Mapping[str, WorkerPool] | None = None,
) -> dict[int, pulumi.ComponentResource]:
    """Declare this region's slots in dependency order, each waiting for the slots it runs after.

    A slot that runs after no other slot waits for `ready` (every control-plane node joined) and
    then waits for `nodes` to be Ready: the CNI it installs is what makes them Ready.
    `cilium_first` is the Cilium minor the region was first installed with (None: new region).
    `workers` are the region's pool components by name.
    """
    pools = dict(workers or {})
    built: dict[int, pulumi.ComponentResource] = {}
    for slot in active_slots(cfg):
        after = [built[number] for number in slot.after]
        inputs = (
            SlotInputs(
                after=after,
                nodes=None,
                cilium_first=cilium_first,
                hcloud_secret=hcloud_secret,
                workers=pools,
            )
            if after
            else SlotInputs(
                after=list(ready),
                nodes=nodes,
                cilium_first=cilium_first,
                hcloud_secret=hcloud_secret,
                workers=pools,
            )
        )
        opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
        built[slot.number] = BUILDERS[slot.number](slot.resource_name, cfg, inputs, opts)
    return built
