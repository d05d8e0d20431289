"""Slot 02: cert-manager, with its CRDs kept when the release goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from components.helm import release
from config.models import StackConfig
from render.cert_manager import cert_manager_values
from render.charts import Chart
from render.system_pods import system_ingress_policy


@dataclass(frozen=True, slots=True, kw_only=True)
class CertManagerArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource] = ()


class CertManager(pulumi.ComponentResource):
    TYPE: Final = "sovereign:slot:CertManager"

    def __init__(
        self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self.release = release(
            f"{name}-release",
            release_name="cert-manager",
            chart=Chart(name="cert-manager", version=args.cfg.cert_manager.version),
            namespace="cert-manager",
            create_namespace=True,
            values=cert_manager_values(args.cfg.cert_manager.version),
            timeout_seconds=args.cfg.releases.timeout_seconds,
            parent=self,
            depends_on=args.after,
        )
        # The namespace is Helm's (create_namespace): its ingress is fenced once it exists.
        policy = system_ingress_policy("cert-manager")
        self.ingress_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(**policy["metadata"]),
            spec=policy["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )
        self.register_outputs({"status": self.release.status})
