"""What the region is known to run, written only once the step it records has succeeded.

Preflight reads what a region runs from Hetzner labels, through an invoke at preview, before any
resource is declared. Labels on the servers cannot record the outcome of a Kubernetes step: every
Kubernetes step waits for the servers, so the servers' labels are written before the step runs,
and a failed `up` would leave them claiming what it only asked for. The region's record is a
Hetzner resource of its own, declared after those steps with their outputs as its labels, so
Pulumi writes it only once they succeeded. An empty spread placement group serves: it costs
nothing, carries labels, is found by label selector and holds no server.

It records:
- `openova.io/cilium-version`: the Cilium chart version of the last Cilium release that
  succeeded (checks/upgrades.py reads it; a failed release leaves the previous value).
- `openova.io/deployer-binding=api`: the deployer group's ClusterRoleBinding exists because this
  program created it through the Kubernetes API (a region created before the binding came with
  the first boot); the deployer's certificate moves to that group only after it is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

import pulumi
import pulumi_hcloud as hcloud
import pulumi_kubernetes as k8s

from config.models import StackConfig
from render.apiserver import DEPLOYER_BINDING_LABEL_KEY, deployer_binding
from render.naming import (
    NODE_ROLE_LABEL_KEY,
    REGION_LABEL_KEY,
    hetzner_labels,
    prefix,
    region_label,
)
from render.system_upgrade import CILIUM_LABEL_KEY

RECORD_ROLE: Final = "record"

# Where the deployer group's ClusterRoleBinding comes from, judged from live labels:
# "boot": cp-1's first boot wrote it into k3s's auto-deploy manifests (a region created with it);
# "api": this program created it through the Kubernetes API (an older region, migrated);
# "missing": neither is known: an older region whose certificate still says system:masters.
BindingSource = Literal["boot", "api", "missing"]


def live_record(cfg: StackConfig) -> dict[str, str]:
    """The labels of this region's record as Hetzner has them now (empty: none yet)."""
    selector = f"{REGION_LABEL_KEY}={region_label(cfg)},{NODE_ROLE_LABEL_KEY}={RECORD_ROLE}"
    result = hcloud.get_placement_groups(with_selector=selector)
    groups = (
        cast(
            list[hcloud.outputs.GetPlacementGroupsPlacementGroupResult] | None,
            result.placement_groups,
        )
        or []
    )
    return dict(groups[0].labels or {}) if groups else {}


def binding_source(
    live_servers: Mapping[str, Mapping[str, str]], record: Mapping[str, str]
) -> BindingSource:
    """Where the deployer group's binding comes from, from the servers' and the record's labels.

    A new region (no live server) gets it at cp-1's first boot. A live region has it from the
    boot exactly when its servers say so; a region created before that label existed may lack
    it (its cp-1 never wrote the manifest and never re-reads user_data), so its deployer keeps a
    certificate it can use until the record says the binding was created.
    """
    if not live_servers:
        return "boot"
    if any(labels.get(DEPLOYER_BINDING_LABEL_KEY) == "boot" for labels in live_servers.values()):
        return "boot"
    if record.get(DEPLOYER_BINDING_LABEL_KEY) == "api":
        return "api"
    return "missing"


def declare_deployer_binding(
    name: str, cfg: StackConfig, provider: pulumi.ProviderResource, after: pulumi.Resource
) -> k8s.rbac.v1.ClusterRoleBinding:
    """The deployer group's ClusterRoleBinding, through the Kubernetes API (older regions).

    Kept declared once created: deleting it from the program would revoke the very certificate
    that deploys. With server-side apply, an existing binding of the same name (a region whose
    cp-1 did write the manifest) is taken over, not refused.
    """
    binding = deployer_binding(cfg)
    return k8s.rbac.v1.ClusterRoleBinding(
        f"{name}-deployer-binding",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=binding["metadata"]["name"]),
        role_ref=k8s.rbac.v1.RoleRefArgs(
            api_group=binding["roleRef"]["apiGroup"],
            kind=binding["roleRef"]["kind"],
            name=binding["roleRef"]["name"],
        ),
        subjects=[
            k8s.rbac.v1.SubjectArgs(
                api_group=subject["apiGroup"], kind=subject["kind"], name=subject["name"]
            )
            for subject in binding["subjects"]
        ],
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[after]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionRecordArgs:
    cfg: StackConfig
    # The Cilium release whose success the Cilium label records.
    cilium: k8s.helm.v3.Release
    # The deployer binding created through the API (None where it came with the first boot).
    deployer_binding: pulumi.CustomResource | None = None


class RegionRecord(pulumi.ComponentResource):
    TYPE: Final = "sovereign:infra:RegionRecord"

    def __init__(
        self, name: str, args: RegionRecordArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        base = hetzner_labels(cfg, **{NODE_ROLE_LABEL_KEY: RECORD_ROLE})
        # Known only once the release has succeeded (an apply on its output): a failed release
        # never reaches Hetzner. The chart version Helm reports, else the one it was asked for.
        cilium = args.cilium.status.apply(lambda status: status.version or cfg.cilium.version)
        after: list[pulumi.Resource] = [args.cilium]
        binding: pulumi.Output[dict[str, str]] = pulumi.Output.from_input({})
        if args.deployer_binding is not None:
            after.append(args.deployer_binding)
            binding = args.deployer_binding.id.apply(lambda _: {DEPLOYER_BINDING_LABEL_KEY: "api"})
        self.labels: pulumi.Output[dict[str, str]] = pulumi.Output.all(cilium, binding).apply(
            lambda v: {**base, CILIUM_LABEL_KEY: str(v[0]), **cast(dict[str, str], v[1])}
        )
        self.group = hcloud.PlacementGroup(
            f"{name}-record",
            name=f"{prefix(cfg)}-record",
            type="spread",
            labels=self.labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.register_outputs({"labels": self.labels})
