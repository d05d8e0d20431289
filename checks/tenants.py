"""Tenant fences across config and the live region: a vCluster keeps the mode it was created in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from config.errors import Problem
from config.models import StackConfig
from render.slots import active_vclusters
from render.vcluster import Mode, mode, mode_label_key

ROOTLESS_DOCS: Final = "loft-sh/vcluster-docs deploy/security/rootless-mode (0.20)"


def live_mode(labels: Mapping[str, str], key: str) -> Mode:
    """What a live server records for one vCluster; no label: created before rootless (root)."""
    value = labels.get(key)
    return value if value in ("rootless", "root", "none") else "root"  # type: ignore[return-value]


def vcluster_mode_problems(
    cfg: StackConfig, live_labels: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """Refuse switching a live vCluster between root and rootless (server name -> its labels).

    vCluster has no migration between the two: the data a root pod wrote is not the non-root
    UID's, and the chart's pod changes under the running control plane.
    """
    problems: list[Problem] = []
    for vcluster in active_vclusters(cfg):
        wanted = mode(cfg.vclusters.spec(vcluster))
        key = mode_label_key(vcluster)
        for server, labels in sorted(live_labels.items()):
            deployed = live_mode(labels, key)
            if deployed in ("none", wanted):
                continue
            recorded = f"records {key}={labels[key]}" if key in labels else f"has no {key} label"
            problems.append(
                Problem(
                    f"sovereign:vclusters.{vcluster}.rootless",
                    "true" if wanted == "rootless" else "false",
                    f"the {vcluster.upper()} vCluster of this live region runs as {deployed} "
                    f"(server {server} {recorded}; a region created before rootless became the "
                    f"default has none and runs as root), and vCluster cannot move a live "
                    f"vCluster between root and non-root ({ROOTLESS_DOCS}). Set "
                    f"sovereign:vclusters.{vcluster}.rootless: "
                    f"{'false' if deployed == 'root' else 'true'}"
                    + (" with podSecurity.enforce 'baseline'" if deployed == "root" else "")
                    + ", or recreate the vCluster (docs/security.md, 'Rootless vClusters')",
                )
            )
            break
    return problems
