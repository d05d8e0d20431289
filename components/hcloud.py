"""The cluster's Hetzner token (Secret kube-system/hcloud), slot 04 (the cloud controller) and
slot 05 (the CSI driver)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from components.helm import release
from config.models import StackConfig
from render.charts import Chart
from render.hcloud import (
    CCM_CHART,
    CCM_RELEASE,
    CSI_CHART,
    CSI_RELEASE,
    HCLOUD_NAMESPACE,
    HCLOUD_SECRET,
    ccm_values,
    csi_values,
    hcloud_secret_data,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HcloudSecretArgs:
    # sovereign:hcloudToken, a secret Output from config; never a plain string here.
    token: pulumi.Output[str]
    # The region's Hetzner network: the CCM attaches LoadBalancer Services' LBs to it.
    network_id: pulumi.Input[str]


class HcloudSecret(pulumi.ComponentResource):
    """The one copy of the cluster's Hetzner token: what the CCM, CSI and autoscaler read."""

    TYPE: Final = "sovereign:infra:HcloudSecret"

    def __init__(
        self, name: str, args: HcloudSecretArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        data = pulumi.Output.secret(
            pulumi.Output.all(args.token, args.network_id).apply(
                lambda v: hcloud_secret_data(str(v[0]), str(v[1]))
            )
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=HCLOUD_SECRET, namespace=HCLOUD_NAMESPACE),
            type="Opaque",
            string_data=data,
            # The Kubernetes SDK marks a Secret's `data` and `stringData` outputs secret itself.
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.secret.metadata.name})


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudControllerArgs:
    cfg: StackConfig
    after: Sequence[pulumi.Resource] = ()
    # Secret kube-system/hcloud: the controller exits at start without its token.
    secret: pulumi.Resource | None = None


def _hcloud_release(
    component: pulumi.ComponentResource,
    name: str,
    args: CloudControllerArgs,
    *,
    release_name: str,
    chart: Chart,
    values: Mapping[str, Any],
) -> k8s.helm.v3.Release:
    """One Hetzner chart in kube-system, after its slot's waits and the token's Secret."""
    return release(
        f"{name}-release",
        release_name=release_name,
        chart=chart,
        namespace=HCLOUD_NAMESPACE,
        values=values,
        timeout_seconds=args.cfg.releases.timeout_seconds,
        parent=component,
        depends_on=[*args.after, *([args.secret] if args.secret is not None else [])],
    )


class CloudController(pulumi.ComponentResource):
    """Slot 04: the Hetzner cloud controller manager (providerID, addresses, LoadBalancers)."""

    TYPE: Final = "sovereign:slot:CloudController"

    def __init__(
        self, name: str, args: CloudControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self.release = _hcloud_release(
            self, name, args, release_name=CCM_RELEASE, chart=CCM_CHART, values=ccm_values(args.cfg)
        )
        self.register_outputs({"status": self.release.status})


class CsiDriver(pulumi.ComponentResource):
    """Slot 05: the Hetzner CSI driver and its `hcloud-volumes` StorageClass."""

    TYPE: Final = "sovereign:slot:CsiDriver"

    def __init__(
        self, name: str, args: CloudControllerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self.release = _hcloud_release(
            self, name, args, release_name=CSI_RELEASE, chart=CSI_CHART, values=csi_values(args.cfg)
        )
        self.register_outputs({"status": self.release.status})
