"""Per-region Hetzner foundation: private network, firewall, deployer SSH key, placement group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_hcloud as hcloud
import pulumi_tls as tls

from config.models import StackConfig
from render.autoscaler import autoscaled_pools, node_group_selector
from render.naming import (
    API_PUBLIC_LABEL_KEY,
    REGION_LABEL_KEY,
    api_public_label,
    deployer_key_name,
    hetzner_labels,
    prefix,
    region_label,
)

WORLD: Final = ["0.0.0.0/0", "::/0"]
# Cilium's WireGuard port: encrypted pod traffic between regions crosses the public network.
WIREGUARD_UDP_PORT: Final = "51871"


def firewall_selectors(cfg: StackConfig) -> list[str]:
    """The Hetzner label selectors of the servers the region's firewall protects: all of them.

    The program's servers carry the region label; cluster-autoscaler 1.35 labels the servers it
    creates only with its node group (render/cluster_autoscaler.yaml), one selector per
    autoscaled pool, so its servers are filtered from their creation on like the others.
    """
    return [
        f"{REGION_LABEL_KEY}={region_label(cfg)}",
        *(node_group_selector(cfg, pool) for pool in autoscaled_pools(cfg)),
    ]


def wireguard_peers(cfg: StackConfig) -> list[str]:
    """The stacks whose servers may reach this region's WireGuard port: a secondary's primary
    always, and the stacks `fleet.wireguardPeers` lists (the primary's way to its secondaries,
    which it has no reference to otherwise)."""
    peers = [cfg.fleet.primary_stack] if cfg.region.role == "secondary" else []
    return list(dict.fromkeys([*peers, *cfg.fleet.wireguard_peers]))


def firewall_rules(cfg: StackConfig, wireguard_sources: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Inbound rules (pure). Hetzner firewalls do not filter the private network.

    `wireguard_sources`: the other regions' server addresses (read by stack reference); none
    leaves the WireGuard port closed, since Hetzner refuses a rule without sources and the
    whole internet has no business there. Within a region the traffic runs on the private
    network, which the firewall does not filter.
    """
    rules: list[dict[str, Any]] = [
        {
            "description": "ssh (deployer, operators)",
            "protocol": "tcp",
            "port": "22",
            "source_ips": list(cfg.access.ssh_allowed_cidrs),
        },
        {
            "description": "kubernetes api",
            "protocol": "tcp",
            "port": "6443",
            # The SSH sources unless the stack lists others; the world only when listed.
            "source_ips": cfg.access.api_sources,
        },
        {"description": "http", "protocol": "tcp", "port": "80", "source_ips": WORLD},
        {"description": "https", "protocol": "tcp", "port": "443", "source_ips": WORLD},
        {"description": "icmp", "protocol": "icmp", "source_ips": WORLD},
    ]
    if wireguard_sources:
        rules.append(
            {
                "description": "cilium wireguard (other regions' servers)",
                "protocol": "udp",
                "port": WIREGUARD_UDP_PORT,
                "source_ips": sorted(set(wireguard_sources)),
            }
        )
    return [{"direction": "in", **rule} for rule in rules]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionNetworkArgs:
    cfg: StackConfig
    # The other regions' server addresses (CIDRs), read through stack references.
    wireguard_sources: pulumi.Input[Sequence[str]] = ()


class RegionNetwork(pulumi.ComponentResource):
    """Everything the control-plane servers attach to."""

    TYPE: Final = "sovereign:infra:RegionNetwork"

    def __init__(
        self, name: str, args: RegionNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        physical = prefix(cfg)
        labels = hetzner_labels(cfg)
        child = pulumi.ResourceOptions(parent=self)

        self.network = hcloud.Network(
            f"{name}-net",
            name=physical,
            ip_range=cfg.network.cidr,
            labels=labels,
            opts=child,
        )
        self.network_id: pulumi.Output[int] = self.network.id.apply(int)
        self.subnet = hcloud.NetworkSubnet(
            f"{name}-subnet",
            network_id=self.network_id,
            type="cloud",
            network_zone=cfg.network_zone,
            ip_range=cfg.network.subnet_cidr,
            opts=child,
        )
        # The workers' own subnet: Hetzner picks each worker's address there, so no worker
        # can take a pinned control-plane or load-balancer address in the servers' subnet.
        self.worker_subnet: hcloud.NetworkSubnet | None = None
        if cfg.workers:
            self.worker_subnet = hcloud.NetworkSubnet(
                f"{name}-workers-subnet",
                network_id=self.network_id,
                type="cloud",
                network_zone=cfg.network_zone,
                ip_range=cfg.network.worker_subnet_cidr,
                opts=child,
            )
        self.firewall = hcloud.Firewall(
            f"{name}-fw",
            name=physical,
            labels={**labels, API_PUBLIC_LABEL_KEY: api_public_label(cfg)},
            rules=pulumi.Output.from_input(args.wireguard_sources).apply(
                lambda sources: [
                    hcloud.FirewallRuleArgs(**rule) for rule in firewall_rules(cfg, sources)
                ]
            ),
            opts=child,
        )
        self.firewall_id: pulumi.Output[int] = self.firewall.id.apply(int)
        # The firewall applies to the region's servers by label, not through each server's
        # `firewall_ids`: set there, a refresh shows the firewall's `apply_to` drifting
        # (terraform-provider-hcloud #1109) and drift.yml would open an issue every day. Hetzner
        # applies a label-selected firewall to a matching server as it is created, so a server
        # is never up without it; servers wait for this attachment (components/control_plane.py).
        # One attachment per firewall (pulumi-hcloud 1.43.3 FirewallAttachment docs).
        self.firewall_attachment = hcloud.FirewallAttachment(
            f"{name}-fw-servers",
            firewall_id=self.firewall_id,
            label_selectors=firewall_selectors(cfg),
            opts=child,
        )
        # Hetzner mails a root password for a server created without an SSH key. A key generated
        # per region avoids that without an operator's private key ever entering config; its
        # private half lives only in encrypted state (break-glass access; `pulumi up` itself
        # uses no SSH since the kubeconfig is built from the minted CAs).
        self.deployer_key = tls.PrivateKey(f"{name}-deployer-key", algorithm="ED25519", opts=child)
        self.deployer_private_key: pulumi.Output[str] = pulumi.Output.secret(
            self.deployer_key.private_key_openssh
        )
        self.ssh_key = hcloud.SshKey(
            f"{name}-deployer",
            name=deployer_key_name(cfg),
            public_key=self.deployer_key.public_key_openssh,
            labels=labels,
            opts=child,
        )
        self.placement_group = hcloud.PlacementGroup(
            f"{name}-spread",
            name=f"{physical}-cp",
            type="spread",
            labels=labels,
            opts=child,
        )
        self.placement_group_id: pulumi.Output[int] = self.placement_group.id.apply(int)
        self.register_outputs(
            {
                "networkId": self.network_id,
                "subnetId": self.subnet.id,
                "workerSubnetId": self.worker_subnet.id if self.worker_subnet else None,
                "firewallId": self.firewall_id,
                "sshKeyId": self.ssh_key.id,
                "placementGroupId": self.placement_group_id,
            }
        )
