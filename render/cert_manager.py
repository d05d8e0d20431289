"""Slot 02 values: cert-manager, with its CRDs kept when the release goes (pure)."""

from __future__ import annotations

from typing import Any

from render.system_pods import cert_manager_resources


def cert_manager_values() -> dict[str, Any]:
    # keep: deleting the release must not delete every Certificate in the cluster with its CRDs.
    return {"crds": {"enabled": True, "keep": True}, **cert_manager_resources()}
