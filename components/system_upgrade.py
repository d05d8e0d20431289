"""Slot 03: system-upgrade-controller and the Plan that upgrades the k3s servers in place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from config.models import StackConfig
from render.manifest_files import project_path
from render.pins import verified
from render.system_pods import system_ingress_policy
from render.system_upgrade import agent_plan, controller_objects, release, server_plan


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemUpgradeArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource]


class SystemUpgrade(pulumi.ComponentResource):
    """The pinned release's manifests, rebuilt from the sources vendored in render/upstream/
    (sha256-checked, no release URL), then the server Plan carrying `controlPlane.k3sVersion`."""

    TYPE: Final = "sovereign:slot:SystemUpgrade"

    def __init__(
        self, name: str, args: SystemUpgradeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        suc = release()
        # The CRD first, as the release's crd.yaml: the Plan below needs it before the
        # controller has started (and could register it itself).
        self.crds = k8s.yaml.v2.ConfigFile(
            f"{name}-crds",
            file=project_path(verified(suc.crd_file)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        # What the release's system-upgrade-controller.yaml holds, rebuilt from its verified
        # sources: the objects go into state and the plan as they are applied.
        self.controller = k8s.yaml.v2.ConfigGroup(
            f"{name}-controller",
            objs=controller_objects(),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.crds, *args.after],
                # Until 2026-12 this was a ConfigFile of the release URL: the same resource, so
                # the controller's objects are updated in place, never deleted and re-created.
                aliases=[pulumi.Alias(type_="kubernetes:yaml/v2:ConfigFile")],
            ),
        )
        # The namespace comes with the controller's objects: its ingress is fenced after them.
        policy = system_ingress_policy(suc.namespace)
        self.ingress_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(**policy["metadata"]),
            spec=policy["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.controller]),
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
        # Workers follow the servers: the agent Plan's prepare step holds each agent until the
        # server Plan is done, so the agents never run ahead of the apiserver.
        agents = agent_plan(args.cfg)
        self.agent_plan: k8s.apiextensions.CustomResource | None = None
        if agents is not None:
            self.agent_plan = k8s.apiextensions.CustomResource(
                f"{name}-agent-plan",
                api_version=agents["apiVersion"],
                kind=agents["kind"],
                metadata=agents["metadata"],
                spec=agents["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[self.crds, self.controller, self.plan]
                ),
            )
        self.register_outputs({"version": args.cfg.control_plane.k3s_version})
