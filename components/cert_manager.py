"""Slot 02: cert-manager, with its CRDs kept when the release goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi

from components.config import StackConfig
from components.helm import Chart, release

CHART_REPO: Final = "https://charts.jetstack.io"


def cert_manager_values() -> dict[str, Any]:
    # keep: deleting the release must not delete every Certificate in the cluster with its CRDs.
    return {"crds": {"enabled": True, "keep": True}}


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
            chart=Chart(
                name="cert-manager", version=args.cfg.cert_manager.version, repo=CHART_REPO
            ),
            namespace="cert-manager",
            create_namespace=True,
            values=cert_manager_values(),
            timeout_seconds=args.cfg.releases.timeout_seconds,
            parent=self,
            depends_on=args.after,
        )
        self.register_outputs({"status": self.release.status})
