"""The API server's own hardening, written by cloud-init: the audit log and the deployer binding.

The deployer's certificate carries a group of the program's own (`api.deployerGroup`), never
`system:masters`, which Kubernetes lets past RBAC: the ClusterRoleBinding below is what makes it
cluster-admin, so deleting the binding or renaming the group revokes the certificate. k3s
applies files in its auto-deploy manifests directory at every start ("Auto-Deploying Manifests",
https://docs.k3s.io/installation/packaged-components, checked 2026-12-04), so the binding exists
a few seconds after the API answers, before any chart (render/wait_for_api.py waits for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from config.models import StackConfig

MANIFESTS_DIR: Final = "/var/lib/rancher/k3s/server/manifests"
DEPLOYER_BINDING: Final = "sovereign-deployers"
DEPLOYER_BINDING_PATH: Final = f"{MANIFESTS_DIR}/{DEPLOYER_BINDING}.yaml"
DEPLOYER_USER: Final = "sovereign-deployer"
# The group of the deployer's certificate in a region that may not have the binding yet
# (components/record.py): the certificate such a region was created with.
LEGACY_DEPLOYER_GROUP: Final = "system:masters"
# Hetzner label saying where the binding comes from: `boot` on the servers of a region whose cp-1
# wrote it at first boot, `api` on the region's record once the program created it through the
# Kubernetes API (components/record.py). Without either the deployer keeps LEGACY_DEPLOYER_GROUP.
DEPLOYER_BINDING_LABEL_KEY: Final = "openova.io/deployer-binding"

AUDIT_POLICY_FILE: Final = Path(__file__).with_name("audit_policy.yaml")
# As the servers get it: the repository's file without its comment lines (user_data is capped).
AUDIT_POLICY: Final = "".join(
    line
    for line in AUDIT_POLICY_FILE.read_text().splitlines(keepends=True)
    if not line.startswith("#")
)
AUDIT_POLICY_PATH: Final = "/var/lib/rancher/k3s/server/audit.yaml"
AUDIT_LOG_PATH: Final = "/var/lib/rancher/k3s/server/logs/audit.log"
# Bounded: at most (1 + maxbackup) files of maxsize MB, none older than maxage days; the
# apiserver rotates them itself. Flag names: kube-apiserver reference,
# https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/ (checked
# 2026-12-04): --audit-log-maxsize (MB), --audit-log-maxbackup (files), --audit-log-maxage (days).
AUDIT_LOG_MAX_SIZE_MB: Final = 100
AUDIT_LOG_MAX_BACKUPS: Final = 5
AUDIT_LOG_MAX_AGE_DAYS: Final = 30


def audit_args() -> list[str]:
    """`kube-apiserver-arg` entries of every server's k3s config."""
    return [
        f"audit-policy-file={AUDIT_POLICY_PATH}",
        f"audit-log-path={AUDIT_LOG_PATH}",
        f"audit-log-maxsize={AUDIT_LOG_MAX_SIZE_MB}",
        f"audit-log-maxbackup={AUDIT_LOG_MAX_BACKUPS}",
        f"audit-log-maxage={AUDIT_LOG_MAX_AGE_DAYS}",
    ]


def deployer_binding(cfg: StackConfig) -> dict[str, Any]:
    """The ClusterRoleBinding that makes the deployer's group cluster-admin."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": DEPLOYER_BINDING},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": cfg.api.deployer_group,
            }
        ],
    }


def deployer_binding_manifest(cfg: StackConfig) -> str:
    return yaml.dump(deployer_binding(cfg), Dumper=yaml.CSafeDumper, sort_keys=False)
