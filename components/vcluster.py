"""Slots 54/58/59: loft-sh vCluster 0.20.0 in its own Pod-Security-labelled namespace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from components.helm import release
from config.models import StackConfig, VClusterName
from render.tenants import (
    egress_policy,
    gateway_ingress_policy,
    limit_range,
    resource_quota,
)
from render.vcluster import (
    CHART,
    namespace_labels,
    namespace_name,
    network_policy_spec,
    release_name,
    vcluster_values,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VClusterArgs:
    cfg: StackConfig
    vcluster: VClusterName
    after: Sequence[pulumi.Resource] = ()


class VClusterSlot(pulumi.ComponentResource):
    """Namespace (PSS labels), its NetworkPolicy, ResourceQuota and LimitRange, then the vCluster
    release that waits for them."""

    TYPE: Final = "sovereign:slot:VCluster"

    def __init__(
        self, name: str, args: VClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, vcluster = args.cfg, args.vcluster
        spec = cfg.vclusters.spec(vcluster)
        ns_name = namespace_name(vcluster)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns_name, labels=namespace_labels(vcluster, spec)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ingress-allowlist", namespace=ns_name),
            spec=network_policy_spec(cfg, vcluster),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        # Cilium policies need Cilium's CRDs: after the slots this one runs after (01 among them).
        cilium_policies = [egress_policy(cfg, vcluster, ns_name)]
        gateway = gateway_ingress_policy(cfg, vcluster, ns_name)
        if gateway is not None:
            cilium_policies.append(gateway)
        self.cilium_policies = [
            k8s.apiextensions.CustomResource(
                f"{name}-{policy['metadata']['name']}",
                api_version=policy["apiVersion"],
                kind=policy["kind"],
                metadata=k8s.meta.v1.ObjectMetaArgs(**policy["metadata"]),
                spec=policy["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.after, self.namespace]),
            )
            for policy in cilium_policies
        ]
        # Before the release: the LimitRanger and the quota judge pods when they are created.
        quota = resource_quota(vcluster, ns_name, spec)
        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=k8s.meta.v1.ObjectMetaArgs(**quota["metadata"]),
            spec=quota["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        limits = limit_range(ns_name, spec)
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=k8s.meta.v1.ObjectMetaArgs(**limits["metadata"]),
            spec=limits["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        self.release = release(
            f"{name}-release",
            release_name=release_name(vcluster),
            chart=CHART,
            namespace=ns_name,
            values=vcluster_values(cfg, spec),
            timeout_seconds=cfg.releases.timeout_seconds,
            parent=self,
            depends_on=[
                *args.after,
                self.namespace,
                self.network_policy,
                self.quota,
                self.limit_range,
                *self.cilium_policies,
            ],
        )
        self.register_outputs({"namespace": ns_name, "status": self.release.status})
