"""The Secret k3s reads its etcd-s3 settings from at every snapshot (kube-system).

The S3 credentials reach the cluster through the Kubernetes provider (a secret input, encrypted in
state) instead of user_data, which any process on the server can read from the metadata service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from config.day2 import BackupCredentials
from config.models import StackConfig
from render.cloudinit import ETCD_S3_SECRET_NAME, etcd_s3_settings


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcdBackupsArgs:
    cfg: StackConfig
    credentials: BackupCredentials


class EtcdBackups(pulumi.ComponentResource):
    TYPE: Final = "sovereign:infra:EtcdBackups"

    def __init__(
        self, name: str, args: EtcdBackupsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        creds = args.credentials
        self.secret = k8s.core.v1.Secret(
            f"{name}-s3",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ETCD_S3_SECRET_NAME, namespace="kube-system"),
            type="Opaque",
            string_data=pulumi.Output.secret(
                pulumi.Output.all(creds.access_key, creds.secret_key).apply(
                    lambda v: {
                        **etcd_s3_settings(args.cfg),
                        "etcd-s3-access-key": str(v[0]),
                        "etcd-s3-secret-key": str(v[1]),
                    }
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"secretName": ETCD_S3_SECRET_NAME})
