"""When each certificate of a region expires and what renews it (pure; the plan prints it)."""

from __future__ import annotations

from typing import Final

from config.models import StackConfig
from render.cloudinit import (
    CERT_RENEW_DAYS_OF_MONTH,
    CERT_RENEW_TIME,
    CERT_RENEW_UNIT,
    K3S_LEAF_DAYS,
    K3S_RENEW_WINDOW_DAYS,
)

# The program's own CAs (components/pki.py CA_VALIDITY_HOURS): k3s never renews a CA.
CA_DAYS: Final = 3650


def certificate_table(cfg: StackConfig) -> list[dict[str, str]]:
    """One row per kind of certificate: validity, when it expires, what renews it."""
    days = ", ".join(
        f"cp-{node + 1} on day {day}"
        for node, day in enumerate(CERT_RENEW_DAYS_OF_MONTH[: cfg.control_plane.count])
    )
    api = cfg.api
    return [
        {
            "certificate": "k3s leaf certificates on each server (API server, kubelet, etcd "
            "peer/server/client, controller, scheduler and agent clients)",
            "validity": f"{K3S_LEAF_DAYS} days",
            "expires": f"{K3S_LEAF_DAYS} days after k3s last issued them (its first start, then "
            "each renewal)",
            "renewedBy": f"k3s itself, at start, once fewer than {K3S_RENEW_WINDOW_DAYS} days "
            f"remain; {CERT_RENEW_UNIT}.timer restarts k3s in that window, one server at a time "
            f"({days} of each month, {CERT_RENEW_TIME} UTC), so renewal happens between day "
            f"{K3S_LEAF_DAYS - K3S_RENEW_WINDOW_DAYS} and about day "
            f"{K3S_LEAF_DAYS - K3S_RENEW_WINDOW_DAYS + 31}; a k3s upgrade restarts it too",
        },
        {
            "certificate": "deployer client certificate (kubeconfig, Kubernetes provider)",
            "validity": f"{api.client_cert_days} days (sovereign:api.clientCertDays)",
            "expires": f"{api.client_cert_days} days after the `up` that issued it",
            "renewedBy": f"any `up` in its last {api.renew_before_days} days "
            "(sovereign:api.renewBeforeDays; tls early_renewal_hours); nothing renews it "
            "without an `up`: drift.yml's daily preview does not apply",
        },
        {
            "certificate": "cluster CAs (server, client, request-header, etcd peer, etcd server)",
            "validity": f"{CA_DAYS} days",
            "expires": f"{CA_DAYS} days after the first `up`",
            "renewedBy": "nothing automatic: replacing them is a new cluster (new "
            "clusterIdentifier, `k3s certificate rotate-ca`); plan it within the 10 years",
        },
    ]
