"""Day-2 checks: server replacement, backups, the API endpoint and the k3s version skew."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from config.errors import Problem
from config.models import StackConfig
from render.cloudinit import (
    API_ENDPOINT_LABEL_KEY,
    api_endpoint_label,
    api_load_balancer,
    object_storage_location,
)
from render.system_upgrade import skew_refusal, version_key


def replacement_problems(cfg: StackConfig) -> list[Problem]:
    """At most one server per `up`, named; a single server only with a snapshot to restore."""
    problems: list[Problem] = []
    rep = cfg.replacement
    allow = cfg.control_plane.allow_replacement
    if allow and rep.server is None:
        problems.append(
            Problem(
                "sovereign:replacement.server",
                "(not set)",
                "required with sovereign:controlPlane.allowReplacement: name the one server this "
                "`up` may replace (cp-1, cp-2 or cp-3); servers are replaced one per `up`",
            )
        )
    if rep.server is None:
        if rep.restore_snapshot is not None:
            problems.append(
                Problem(
                    "sovereign:replacement.restoreSnapshot",
                    repr(rep.restore_snapshot),
                    "only used when replacing a single server; remove it",
                )
            )
        return problems
    if not allow:
        problems.append(
            Problem(
                "sovereign:replacement.server",
                repr(rep.server),
                "takes effect only with sovereign:controlPlane.allowReplacement: true",
            )
        )
    number = int(rep.server.removeprefix("cp-"))
    if number > cfg.control_plane.count:
        problems.append(
            Problem(
                "sovereign:replacement.server",
                repr(rep.server),
                f"this region has {cfg.control_plane.count} server(s): cp-1"
                + (" to cp-3" if cfg.control_plane.count == 3 else ""),
            )
        )
    if cfg.control_plane.count == 1:
        if not cfg.backups.enabled or rep.restore_snapshot is None:
            problems.append(
                Problem(
                    "sovereign:replacement.restoreSnapshot",
                    repr(rep.restore_snapshot) if rep.restore_snapshot else "(not set)",
                    "replacing the only server of a region loses its etcd; it is refused unless "
                    "sovereign:backups.enabled is true and this names the S3 snapshot the new "
                    "server restores (`k3s etcd-snapshot ls`)",
                )
            )
    elif rep.restore_snapshot is not None:
        problems.append(
            Problem(
                "sovereign:replacement.restoreSnapshot",
                repr(rep.restore_snapshot),
                "an HA server rejoins the other two and takes etcd from them; remove it",
            )
        )
    return problems


def backup_problems(cfg: StackConfig) -> list[Problem]:
    backups = cfg.backups
    if not backups.enabled:
        return []
    problems: list[Problem] = []
    if backups.bucket is None:
        problems.append(
            Problem(
                "sovereign:backups.bucket",
                "(not set)",
                "required with sovereign:backups.enabled: an existing Object Storage bucket",
            )
        )
    if object_storage_location(cfg) is None:
        problems.append(
            Problem(
                "sovereign:backups.location",
                "(not set)",
                f"Hetzner Object Storage has no endpoint in {cfg.region.location}; choose fsn1, "
                "nbg1 or hel1",
            )
        )
    return problems


def api_problems(cfg: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    if cfg.api.renew_before_days >= cfg.api.client_cert_days:
        problems.append(
            Problem(
                "sovereign:api.renewBeforeDays",
                str(cfg.api.renew_before_days),
                f"fewer days than sovereign:api.clientCertDays ({cfg.api.client_cert_days}); "
                "otherwise every `up` issues a new certificate",
            )
        )
    if not api_load_balancer(cfg):
        return problems
    value = cfg.api.private_ip
    allowed = (
        f"a free host address of {cfg.network.subnet_cidr}, not a server's or the ingress LB's"
    )
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return [*problems, Problem("sovereign:api.privateIp", repr(value), allowed)]
    subnet = ipaddress.ip_network(cfg.network.subnet_cidr)
    taken = set(cfg.control_plane_ips)
    if cfg.load_balancer.enabled:
        taken.add(cfg.load_balancer.private_ip)
    reserved = {subnet.network_address, subnet.broadcast_address}
    if address not in subnet or address in reserved or value in taken:
        problems.append(Problem("sovereign:api.privateIp", repr(value), allowed))
    return problems


def day2_problems(cfg: StackConfig) -> list[Problem]:
    return [*replacement_problems(cfg), *backup_problems(cfg), *api_problems(cfg)]


def skew_problems(cfg: StackConfig, deployed: Mapping[str, str]) -> list[Problem]:
    """Refuse a k3sVersion the running servers (server name -> version) cannot move to."""
    if not deployed:
        return []
    wanted = cfg.control_plane.k3s_version
    ordered = sorted(deployed.items(), key=lambda item: version_key(item[1]))
    # The newest server decides a downgrade, the oldest a skipped minor.
    for server, version in (ordered[-1], ordered[0]):
        reason = skew_refusal(version, wanted)
        if reason is not None:
            return [
                Problem(
                    "sovereign:controlPlane.k3sVersion",
                    repr(wanted),
                    f"{reason} (server {server} records {version})",
                )
            ]
    return []


# Why a live region keeps its server count and API endpoint. k3s writes each server's serving
# certificate for the tls-san of its config file, which cloud-init writes once (user_data is
# ignored afterwards), and refuses names outside it since tls-san-security became the default in
# k3s 1.28 (GHSA-m4hf-6vgr-75r2, checked 2026-12-04). Growing 1 -> 3 moves the kubeconfig to the
# new API load balancer and makes cp-2/cp-3 join through its private address: neither is in
# cp-1's certificate, so the deployer's wait fails TLS for 900 s and the joiners cannot verify
# cp-1. Shrinking 3 -> 1 deletes two of three etcd members at once: no quorum.
_GROW_STEPS = (
    "a live region keeps the server count and API endpoint it was created with: cp-1's "
    "certificate names only the API endpoint of its first boot (k3s tls-san, enforced since "
    "1.28, GHSA-m4hf-6vgr-75r2) and its user_data is never applied again, so the new servers "
    "and the deployer could not verify it (and 3 -> 1 would drop two etcd members at once). "
    "Keep {live}; to change it, build a new region with the count you want and move to it "
    "(docs/day2.md, 'Growing or shrinking a region')"
)


def live_shape_problems(cfg: StackConfig, live: Mapping[str, Mapping[str, str]]) -> list[Problem]:
    """Refuse a server count or API endpoint other than the live region's (name -> labels)."""
    numbers = {
        int(number)
        for name in live
        for _, _, number in [name.rpartition("-cp-")]
        if number.isdigit()
    }
    if not numbers:
        return []
    problems: list[Problem] = []
    live_count = 3 if max(numbers) > 1 else 1
    if cfg.control_plane.count != live_count:
        problems.append(
            Problem(
                "sovereign:controlPlane.count",
                str(cfg.control_plane.count),
                _GROW_STEPS.format(live=f"sovereign:controlPlane.count: {live_count}"),
            )
        )
    recorded = {labels.get(API_ENDPOINT_LABEL_KEY) for labels in live.values()} - {None}
    wanted = api_endpoint_label(cfg)
    if recorded and wanted not in recorded and cfg.control_plane.count == live_count:
        was = "on" if "lb" in recorded else "off"
        problems.append(
            Problem(
                "sovereign:api.loadBalancer",
                repr(cfg.api.load_balancer) if cfg.api.load_balancer is not None else "(not set)",
                _GROW_STEPS.format(
                    live=f"the API load balancer {was} (sovereign:api.loadBalancer)"
                ),
            )
        )
    return problems


def older_region_notices(*, binding_missing: bool, secrets_encrypted: bool) -> list[str]:
    """What every preview and up of a live region created before these features says."""
    notices: list[str] = []
    if binding_missing:
        notices.append(
            "the region has no record of the deployer binding (created before it came with the "
            "first boot): this up keeps the deployer certificate in system:masters and creates "
            "the ClusterRoleBinding sovereign-deployers through the API; the next up moves the "
            "certificate to sovereign:api.deployerGroup (docs/security.md, 'Regions created "
            "before the binding')"
        )
    if not secrets_encrypted:
        notices.append(
            "the region's servers run without secrets-encryption (created before it was on): "
            "Secrets sit in plain text in etcd and every snapshot, and new servers join "
            "without it to match; docs/day2.md ('Secrets at rest') says how to turn it on"
        )
    return notices
