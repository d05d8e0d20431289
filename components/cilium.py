"""Slot 01: Cilium, replacing flannel, kube-proxy and k3s's network policy controller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from components.helm import release
from components.kubeconfig import NodeWait, wait_for_nodes
from config.models import StackConfig
from render.charts import Chart
from render.cilium import cilium_values, ingress_gateway, metadata_deny_policies
from render.manifest_files import gateway_api_files, project_path
from render.pins import verified


@dataclass(frozen=True, slots=True, kw_only=True)
class CiliumArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource] = ()
    # Every node Ready once the CNI is in: the slots after this one wait for it.
    nodes: NodeWait | None = None
    # The Cilium minor the region was first installed with (None: a new region).
    first_line: str | None = None


class Cilium(pulumi.ComponentResource):
    TYPE: Final = "sovereign:slot:Cilium"

    def __init__(
        self, name: str, args: CiliumArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        waits: list[pulumi.Resource] = list(args.after)
        gateway = cfg.cilium.gateway_api
        if gateway.enabled:
            # The operator looks for the Gateway API CRDs only at start-up: apply them first.
            # From the vendored files (sha256 checked here), never from a release URL.
            crds = k8s.yaml.v2.ConfigGroup(
                f"{name}-gateway-api-crds",
                files=[
                    project_path(verified(path))
                    for path in gateway_api_files(cfg.cilium.gateway_api_crds)
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            waits.append(crds)
        self.release = release(
            f"{name}-release",
            release_name="cilium",
            chart=Chart(name="cilium", version=cfg.cilium.version),
            namespace="kube-system",
            values=cilium_values(cfg, args.first_line),
            timeout_seconds=cfg.releases.timeout_seconds,
            parent=self,
            depends_on=waits,
        )
        # The first keeps the resource name of the single deny it replaces (updated in place,
        # from "every pod" to "every pod outside kube-system"), and waits for the kube-system
        # ones: in a live region the denies inside kube-system exist before the old deny
        # narrows, so no kube-system pod is ever left without one.
        (first, first_spec), *rest = metadata_deny_policies()

        def deny(
            resource: str, policy: str, spec: dict[str, Any], after: list[pulumi.Resource]
        ) -> k8s.apiextensions.CustomResource:
            return k8s.apiextensions.CustomResource(
                resource,
                api_version="cilium.io/v2",
                kind="CiliumClusterwideNetworkPolicy",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=policy),
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, *after]),
            )

        inside = [
            deny(f"{name}-deny-metadata-{index}", policy, spec, [])
            for index, (policy, spec) in enumerate(rest, start=1)
        ]
        self.metadata_policies = [
            deny(f"{name}-deny-metadata", first, first_spec, list(inside)),
            *inside,
        ]
        self.nodes_ready: pulumi.Resource | None = None
        if args.nodes is not None:
            # A child of this slot: every slot that runs after 01 waits for it too.
            self.nodes_ready = wait_for_nodes(
                f"{name}-nodes-ready", args.nodes, "Ready", parent=self, depends_on=[self.release]
            )
        self.gateway: k8s.apiextensions.CustomResource | None = None
        gateway_object = ingress_gateway(cfg)
        if gateway_object is not None:
            # What the Hetzner load balancer's targets listen on: envoy on the host, at the
            # Gateway's listener ports, once the release (and its GatewayClass) exists.
            self.gateway = k8s.apiextensions.CustomResource(
                f"{name}-ingress-gateway",
                api_version=gateway_object["apiVersion"],
                kind=gateway_object["kind"],
                metadata=k8s.meta.v1.ObjectMetaArgs(**gateway_object["metadata"]),
                spec=gateway_object["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
            )
        self.register_outputs({"status": self.release.status})
