"""Every Helm release a stack installs, as data: chart, release name, namespace, values (pure).

The components declare exactly these (a test compares them with what the program registers);
the offline plan and the rendered-object checks render them with Helm's own engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.models import StackConfig, VClusterName
from render.cert_manager import CHART_REPO as CERT_MANAGER_REPO
from render.cert_manager import cert_manager_values
from render.charts import Chart
from render.cilium import CHART_REPO as CILIUM_REPO
from render.cilium import cilium_values
from render.slots import Slot, active_slots
from render.vcluster import CHART as VCLUSTER_CHART
from render.vcluster import namespace_name, release_name, vcluster_values


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseSpec:
    slot: int
    name: str
    chart: Chart
    namespace: str
    values: Mapping[str, Any]
    vcluster: VClusterName | None = None


def _release(cfg: StackConfig, slot: Slot) -> ReleaseSpec | None:
    if slot.vcluster is not None:
        return ReleaseSpec(
            slot=slot.number,
            name=release_name(slot.vcluster),
            chart=VCLUSTER_CHART,
            namespace=namespace_name(slot.vcluster),
            values=vcluster_values(cfg, cfg.vclusters.spec(slot.vcluster)),
            vcluster=slot.vcluster,
        )
    if slot.release == "cilium":
        chart = Chart(name="cilium", version=cfg.cilium.version, repo=CILIUM_REPO)
        return ReleaseSpec(
            slot=slot.number,
            name="cilium",
            chart=chart,
            namespace="kube-system",
            values=cilium_values(cfg),
        )
    if slot.release == "cert-manager":
        chart = Chart(name="cert-manager", version=cfg.cert_manager.version, repo=CERT_MANAGER_REPO)
        return ReleaseSpec(
            slot=slot.number,
            name="cert-manager",
            chart=chart,
            namespace="cert-manager",
            values=cert_manager_values(),
        )
    # Slot 03 (system-upgrade-controller) applies the release's manifests, not a Helm chart.
    return None


def releases(cfg: StackConfig) -> list[ReleaseSpec]:
    """The stack's Helm releases in slot order."""
    return [spec for slot in active_slots(cfg) if (spec := _release(cfg, slot)) is not None]
