"""One region of an OpenOva Sovereign on Hetzner Cloud: this stack's servers and first slots."""

from __future__ import annotations

import datetime
from typing import cast

import pulumi
import pulumi_kubernetes as k8s

from checks import versions
from checks.day2 import live_shape_problems, older_region_notices, skew_problems
from checks.hetzner import api_public_notice, cloud_controller_problems
from checks.preflight import preflight
from checks.tenants import vcluster_mode_problems, vcluster_storage_problems
from checks.upgrades import first_cilium_line, running_of, step_problems
from checks.workers import autoscaling_notices, autoscaling_warnings, removal_warnings
from components import cluster_objects
from components.backups import EtcdBackups, EtcdBackupsArgs
from components.cilium import Cilium
from components.control_plane import (
    ControlPlane,
    ControlPlaneArgs,
    live_control_plane,
    recorded_cilium,
    recorded_cilium_first,
    recorded_versions,
    secrets_encryption,
)
from components.fleet import (
    PrimaryReference,
    PrimaryReferenceArgs,
    WireGuardPeers,
    WireGuardPeersArgs,
)
from components.hcloud import HcloudSecret, HcloudSecretArgs
from components.kubeconfig import Kubeconfig, KubeconfigArgs
from components.network import RegionNetwork, RegionNetworkArgs, wireguard_peers
from components.pki import ClusterPki, ClusterPkiArgs
from components.record import (
    RegionRecord,
    RegionRecordArgs,
    binding_source,
    declare_deployer_binding,
    live_record,
)
from components.slots import build_slots
from components.workers import WorkerPool, WorkerPoolArgs, live_worker_labels, live_workers
from config.day2 import load_backup_credentials
from config.errors import SovereignConfigError
from config.models import hcloud_token, load_config, registry_mirror_password
from render.cloudinit import kubeconfig_server
from render.naming import prefix, region_label
from render.slots import active_vclusters

# Validates every sovereign:* key (and the checks across them) before any resource exists.
cfg = load_config(check=preflight)
# Facts no pin in reach can fix (a Kubernetes minor past its upstream end of life), shown on
# every preview and up rather than refused.
for notice in versions.notices(cfg, datetime.date.today()):
    pulumi.log.warn(f"stack {pulumi.get_stack()}: {notice}")
public_api = api_public_notice(cfg)
if public_api is not None:
    pulumi.log.warn(f"stack {pulumi.get_stack()}: {public_api}")
name = prefix(cfg)
# The servers as Hetzner has them now: the k3s and Cilium versions each last received (one
# supported minor per `up`) and how cp-1 booted, and how each vCluster runs (root or rootless,
# which a live vCluster keeps). Read at preview too, so a refused change fails before anything
# changes.
live = live_control_plane(cfg)
# The region's record (components/record.py): what its last successful steps left behind.
record = live_record(cfg)
worker_labels = live_worker_labels(cfg)
recorded = recorded_versions(cfg, live)
running = running_of(recorded, recorded_cilium(live, record))
# The Cilium line the region was first installed with: Cilium's upgradeCompatibility.
cilium_first = first_cilium_line(cfg, recorded_cilium_first(live), running)
skew = [
    *(step_problems(cfg, running) or skew_problems(cfg, recorded)),
    *vcluster_mode_problems(cfg, {server: spec.labels for server, spec in live.items()}),
    *vcluster_storage_problems(cfg, {server: spec.labels for server, spec in live.items()}),
    *live_shape_problems(cfg, {server: spec.labels for server, spec in live.items()}),
    # A node keeps the providerID its first controller gave it: no silent switch of a live one.
    *cloud_controller_problems(
        cfg, {**{server: spec.labels for server, spec in live.items()}, **worker_labels}
    ),
]
if skew:
    raise SovereignConfigError(skew, pulumi.get_stack())
backup_credentials = load_backup_credentials(cfg.backups.enabled)
# Whether the deployer group's binding exists: a region created before it came with the first
# boot keeps its system:masters certificate until this program has created it.
binding = binding_source({server: spec.labels for server, spec in live.items()}, record)
for notice in older_region_notices(
    binding_missing=binding == "missing", secrets_encrypted=secrets_encryption(live)
):
    pulumi.log.warn(f"stack {pulumi.get_stack()}: {notice}")

# A secondary reads its primary's outputs and checks the fleet invariants at preview; every
# resource of the region waits for that check.
fleet = (
    PrimaryReference(name, PrimaryReferenceArgs(cfg=cfg, stack=pulumi.get_stack()))
    if cfg.region.role == "secondary"
    else None
)
gate = fleet.gate if fleet is not None else None
# WireGuard between regions is open only to the other regions' servers, read by stack reference.
peers = WireGuardPeers(
    f"{name}-wireguard",
    WireGuardPeersArgs(stacks=wireguard_peers(cfg)),
)
network = RegionNetwork(
    name, RegionNetworkArgs(cfg=cfg, wireguard_sources=peers.sources), opts=gate
)
pki = ClusterPki(name, ClusterPkiArgs(cfg=cfg, legacy_group=binding == "missing"), opts=gate)
control_plane = ControlPlane(
    name,
    ControlPlaneArgs(
        cfg=cfg,
        network=network,
        pki=pki,
        live=live,
        backup_credentials=backup_credentials,
        registry_password=registry_mirror_password(),
        cilium_first=cilium_first,
        binding_at_boot=binding == "boot",
    ),
    opts=gate,
)

# One component per pool; each joins the stable endpoint once the servers exist. Nothing drains
# a worker this update deletes, so every preview says which ones it deletes.
for warning in removal_warnings(cfg, live_workers(cfg, worker_labels)):
    pulumi.log.warn(warning)
# An autoscaled pool's servers are the autoscaler's, never this program's: said on every preview.
for notice in autoscaling_notices(cfg):
    pulumi.log.info(f"stack {pulumi.get_stack()}: {notice}")
for warning in autoscaling_warnings(cfg):
    pulumi.log.warn(f"stack {pulumi.get_stack()}: {warning}")
workers = {
    pool: WorkerPool(
        f"{name}-pool-{pool}",
        WorkerPoolArgs(
            cfg=cfg,
            pool=pool,
            network=network,
            token=control_plane.token.result,
            registry_password=registry_mirror_password(),
            after=[*control_plane.servers, *control_plane.api_targets],
        ),
        opts=gate,
    )
    for pool in sorted(cfg.workers)
}

api_ip = control_plane.api_public_ip or pulumi.Output.from_input(None)
kubeconfig = Kubeconfig(
    name,
    KubeconfigArgs(
        cfg=cfg,
        server=pulumi.Output.all(control_plane.public_ips[0], api_ip).apply(
            lambda v: kubeconfig_server(cfg, v[0], v[1])
        ),
        pki=pki,
        node_names=control_plane.node_names,
        node_ips=control_plane.public_ips,
        server_ids=[server.id for server in control_plane.servers],
        init_server_id=control_plane.servers[0].id,
        same_cluster=control_plane.boot_modes[0] != "init",
        restoring=control_plane.restoring,
        wait_for=[*control_plane.servers, *control_plane.api_targets],
    ),
)

# Every Kubernetes object is deleted with the cluster: a destroy skips uninstalling them through
# a dying API. The identity is the cluster in Pulumi's terms: deleted by a destroy, replaced only
# by a new cluster, untouched while a config change adds or removes objects in it.
cluster_objects.register(kubeconfig.identity)
provider = k8s.Provider(
    f"{name}-k8s",
    kubeconfig=kubeconfig.kubeconfig,
    # Changes only when the cluster is a new one (new CA key, or a cp-1 that started etcd
    # afresh), so Pulumi then creates every object in it again; a renewed client certificate
    # or a replaced server that rejoined keeps it.
    cluster_identifier=kubeconfig.cluster_identifier,
    # Off on the normal path: one unreachable refresh must never drop releases from state.
    # sovereign:teardown turns it on to refresh a region whose cluster is already gone (a
    # destroy no longer needs it: every object is deleted with the cluster, without a call).
    delete_unreachable=cfg.teardown,
    # Explicit, not the plugin's default: a newer plugin changing it must not change what `up`
    # does (server-side apply: field managers and conflicts decided by the API server).
    enable_server_side_apply=True,
    # The provider asks the API for its schema when it starts and, if that fails, reports the
    # cluster unreachable for the whole run: it must not start before the API answers.
    opts=pulumi.ResourceOptions(depends_on=[kubeconfig.ready]),
)

if backup_credentials is not None:
    EtcdBackups(
        f"{name}-etcd-backups",
        EtcdBackupsArgs(cfg=cfg, credentials=backup_credentials),
        pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )

# A region whose binding did not come with its first boot gets it through the API (with the
# certificate it has, before that certificate moves to the group), and keeps it declared.
deployer_binding = (
    declare_deployer_binding(name, cfg, provider, kubeconfig.ready) if binding != "boot" else None
)

# The one copy of the cluster's Hetzner token: the CCM and CSI (and the autoscaler) read it.
hcloud_secret = HcloudSecret(
    f"{name}-hcloud",
    HcloudSecretArgs(token=hcloud_token(), network_id=network.network.id),
    pulumi.ResourceOptions(providers={"kubernetes": provider}),
)
slots = build_slots(
    cfg,
    provider,
    ready=[kubeconfig.ready],
    nodes=kubeconfig.nodes,
    # A new region needs no upgradeCompatibility: it starts on the line it installs.
    cilium_first=cilium_first if live else None,
    hcloud_secret=hcloud_secret.secret,
    workers=workers,
)
# Written only after the Cilium release (and the deployer binding) succeeded: what the next
# preview reads as running.
RegionRecord(
    f"{name}-region",
    RegionRecordArgs(
        cfg=cfg, cilium=cast(Cilium, slots[1]).release, deployer_binding=deployer_binding
    ),
    opts=gate,
)
vclusters = active_vclusters(cfg)

pulumi.export("regionKey", cfg.region.key)
pulumi.export("role", cfg.region.role)
# Index and CIDRs let `./sovereign plan --all --live` check the deployed fleet like the offline one.
pulumi.export("regionIndex", cfg.region.index)
pulumi.export("podCidr", cfg.pod_cidr)
pulumi.export("serviceCidr", cfg.service_cidr)
pulumi.export("regionLabel", region_label(cfg))
pulumi.export("controlPlanePublicIps", control_plane.public_ips)
pulumi.export("controlPlanePrivateIps", control_plane.private_ips)
pulumi.export("loadBalancerIp", control_plane.load_balancer_ip)
pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig.kubeconfig))
pulumi.export("apiServer", kubeconfig.server)
pulumi.export("apiLoadBalancerIp", control_plane.api_public_ip)
pulumi.export("k3sVersion", cfg.control_plane.k3s_version)
pulumi.export("vclusters", vclusters)
pulumi.export("vclusterCount", len(vclusters))
pulumi.export("workers", {pool: component.names for pool, component in workers.items()})
if fleet is not None:
    pulumi.export("primaryRegionKey", fleet.primary_key)
