"""Every Helm release a stack installs, as data: chart, release name, namespace, values (pure).

The components declare exactly these (a test compares them with what the program registers);
the offline plan and the rendered-object checks render them with Helm's own engine. The
manifests a stack applies without Helm (the Gateway API CRDs, system-upgrade-controller) are
sets of their own (`manifest_sets`), rendered from the same vendored files `up` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from config.models import StackConfig, VClusterName
from render import autoscaler
from render.cert_manager import cert_manager_values
from render.charts import Chart
from render.cilium import cilium_values
from render.hcloud import (
    CCM_CHART,
    CCM_RELEASE,
    CSI_CHART,
    CSI_RELEASE,
    HCLOUD_NAMESPACE,
    ccm_values,
    csi_values,
)
from render.helm import RenderedObject
from render.manifest_files import gateway_api_crds
from render.slots import Slot, active_slots
from render.system_upgrade import controller_objects, crd_objects
from render.system_upgrade import release as suc_release
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
    # "manifests": vendored files applied as they are (no Helm); `chart` names their release.
    source: Literal["helm", "manifests"] = "helm"


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
        chart = Chart(name="cilium", version=cfg.cilium.version)
        return ReleaseSpec(
            slot=slot.number,
            name="cilium",
            chart=chart,
            namespace="kube-system",
            values=cilium_values(cfg),
        )
    if slot.release == "cert-manager":
        chart = Chart(name="cert-manager", version=cfg.cert_manager.version)
        return ReleaseSpec(
            slot=slot.number,
            name="cert-manager",
            chart=chart,
            namespace="cert-manager",
            values=cert_manager_values(cfg.cert_manager.version),
        )
    if slot.release == CCM_RELEASE:
        return ReleaseSpec(
            slot=slot.number,
            name=CCM_RELEASE,
            chart=CCM_CHART,
            namespace=HCLOUD_NAMESPACE,
            values=ccm_values(cfg),
        )
    if slot.release == CSI_RELEASE:
        return ReleaseSpec(
            slot=slot.number,
            name=CSI_RELEASE,
            chart=CSI_CHART,
            namespace=HCLOUD_NAMESPACE,
            values=csi_values(cfg),
        )
    if slot.release == autoscaler.RELEASE:
        return ReleaseSpec(
            slot=slot.number,
            name=autoscaler.RELEASE,
            chart=autoscaler.facts().chart,
            namespace=autoscaler.NAMESPACE,
            values=autoscaler.autoscaler_values(cfg),
        )
    # Slot 03 (system-upgrade-controller) applies the release's manifests, not a Helm chart.
    return None


def releases(cfg: StackConfig) -> list[ReleaseSpec]:
    """The stack's Helm releases in slot order."""
    return [spec for slot in active_slots(cfg) if (spec := _release(cfg, slot)) is not None]


GATEWAY_API_CRDS: Final = "gateway-api-crds"
SYSTEM_UPGRADE: Final = "system-upgrade-controller"


def manifest_sets(cfg: StackConfig) -> list[ReleaseSpec]:
    """What the stack applies from vendored manifests, in slot order."""
    sets: list[ReleaseSpec] = []
    if cfg.cilium.gateway_api.enabled:
        sets.append(
            ReleaseSpec(
                slot=1,
                name=GATEWAY_API_CRDS,
                chart=Chart(name="gateway-api", version=cfg.cilium.gateway_api_crds),
                namespace="",
                values={},
                source="manifests",
            )
        )
    suc = suc_release()
    sets.append(
        ReleaseSpec(
            slot=3,
            name=SYSTEM_UPGRADE,
            chart=Chart(name=SYSTEM_UPGRADE, version=suc.version),
            namespace=suc.namespace,
            values={},
            source="manifests",
        )
    )
    return sets


def manifest_objects(spec: ReleaseSpec) -> tuple[RenderedObject, ...]:
    """The objects a manifest set applies, each file verified by sha256 before it is read."""
    if spec.name == GATEWAY_API_CRDS:
        docs = gateway_api_crds(spec.chart.version)
        template = f"render/upstream/gateway-api-{spec.chart.version}/"
    else:
        docs = [*crd_objects(), *controller_objects()]
        template = f"render/upstream/{suc_release().sources.name}/"
    return tuple(RenderedObject(template, doc, spec.namespace) for doc in docs)


def all_releases(cfg: StackConfig) -> list[ReleaseSpec]:
    """Helm releases and manifest sets, in slot order (manifests first within a slot: the
    Gateway API CRDs are applied before the Cilium release)."""
    both = [*manifest_sets(cfg), *releases(cfg)]
    return sorted(both, key=lambda spec: (spec.slot, spec.source != "manifests"))
