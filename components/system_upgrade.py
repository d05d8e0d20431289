"""Slot 03: system-upgrade-controller and the Plan that upgrades the k3s servers in place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from config.models import StackConfig
from render.system_upgrade import release, server_plan


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemUpgradeArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource]


class SystemUpgrade(pulumi.ComponentResource):
    """The pinned release's manifests (applied by the provider, read from the release URL at
    preview), then the server Plan carrying `controlPlane.k3sVersion`."""

    TYPE: Final = "sovereign:slot:SystemUpgrade"

    def __init__(
        self, name: str, args: SystemUpgradeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        suc = release()
        # The controller may not create its own CRD (its ClusterRole only reads CRDs).
        self.crds = k8s.yaml.v2.ConfigFile(
            f"{name}-crds",
            file=suc.crds_url,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.controller = k8s.yaml.v2.ConfigFile(
            f"{name}-controller",
            file=suc.controller_url,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.crds, *args.after]),
        )
        plan = server_plan(args.cfg)
        self.plan = k8s.apiextensions.CustomResource(
            f"{name}-server-plan",
            api_version=plan["apiVersion"],
            kind=plan["kind"],
            metadata=plan["metadata"],
            spec=plan["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.crds, self.controller]),
        )
        self.register_outputs({"version": args.cfg.control_plane.k3s_version})
