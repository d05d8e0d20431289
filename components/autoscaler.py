"""Slot 06: cluster-autoscaler sizing the pools that set `autoscaling` (Hetzner provider)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from components.helm import release
from config.models import StackConfig
from render.autoscaler import (
    CONFIG_KEY,
    CONFIG_SECRET,
    NAMESPACE,
    RELEASE,
    autoscaled_pools,
    autoscaler_values,
    cluster_config_json,
    facts,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAutoscalerArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource] = ()
    # Each autoscaled pool's agent cloud-init (secret: it holds the join token), the very
    # Output its WorkerPool built; never rendered a second time.
    cloud_init: Mapping[str, pulumi.Output[str]]
    # Hetzner resources the provider looks up by name when it starts (the pools' placement
    # groups, the workers' subnet, the firewall attachment that selects its servers): it exits
    # if one is missing, so the release waits for them.
    hetzner: Sequence[pulumi.Resource] = ()
    # Secret kube-system/hcloud: the autoscaler exits at start without its token.
    secret: pulumi.Resource | None = None


class ClusterAutoscaler(pulumi.ComponentResource):
    """The Secret with the provider's cluster config, then the chart that mounts it."""

    TYPE: Final = "sovereign:slot:ClusterAutoscaler"

    def __init__(
        self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        pools = autoscaled_pools(cfg)
        cloud_init = pulumi.Output.all(*(args.cloud_init[pool] for pool in pools)).apply(
            lambda texts: dict(zip(pools, (str(t) for t in texts), strict=True))
        )
        # Pulumi secret in state and plan; stored by the provider as a Secret (never a
        # ConfigMap, never an env value that `kubectl describe` would print).
        self.config = k8s.core.v1.Secret(
            f"{name}-hetzner-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=CONFIG_SECRET, namespace=NAMESPACE),
            type="Opaque",
            string_data={
                CONFIG_KEY: pulumi.Output.secret(
                    cloud_init.apply(lambda texts: cluster_config_json(cfg, texts))
                )
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.release = release(
            f"{name}-release",
            release_name=RELEASE,
            chart=facts().chart,
            namespace=NAMESPACE,
            values=autoscaler_values(cfg),
            timeout_seconds=cfg.releases.timeout_seconds,
            parent=self,
            depends_on=[
                *args.after,
                *args.hetzner,
                *([args.secret] if args.secret is not None else []),
                self.config,
            ],
        )
        self.register_outputs({"status": self.release.status})
