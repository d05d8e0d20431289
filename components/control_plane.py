"""k3s control-plane servers at fixed private IPs, their public IPs and the optional LB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_hcloud as hcloud
import pulumi_random as random

from components.network import RegionNetwork
from config.errors import Problem, SovereignConfigError
from config.models import StackConfig
from render.cloudinit import K3S_TOKEN_LENGTH, USER_DATA_CAP, render_user_data
from render.naming import NODE_ROLE_LABEL_KEY, hetzner_labels, prefix

# Changing any of these makes Hetzner rebuild the server: a silent replacement of a running
# control plane. They are ignored unless sovereign:controlPlane.allowReplacement is true.
REPLACING_INPUTS: Final = ["user_data", "image", "ssh_keys"]


def checked_user_data(
    cfg: StackConfig, node: int, public_ip: str, token: str, registry_password: str | None = None
) -> str:
    """Render, refusing (at `up`, with the real addresses) anything over Hetzner's cap."""
    user_data = render_user_data(cfg, node, public_ip, token, registry_password)
    size = len(user_data.encode())
    if size > USER_DATA_CAP:
        raise SovereignConfigError(
            [Problem(f"server {node + 1} user_data", f"{size} bytes", f"at most {USER_DATA_CAP}")]
        )
    return user_data


def server_options(cfg: StackConfig) -> tuple[bool, list[str], bool]:
    """(protect, ignore_changes, delete_before_replace) of every control-plane server."""
    if cfg.control_plane.allow_replacement:
        # The private IP is fixed, so the old server must go before its successor can take it.
        return cfg.control_plane.protect, [], True
    return cfg.control_plane.protect, list(REPLACING_INPUTS), False


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlaneArgs:
    cfg: StackConfig
    network: RegionNetwork
    registry_password: pulumi.Output[str] | None = None


class ControlPlane(pulumi.ComponentResource):
    """One or three k3s servers; the first initialises embedded etcd, the others join it."""

    TYPE: Final = "sovereign:infra:ControlPlane"

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, net = args.cfg, args.network
        physical = prefix(cfg)
        labels = hetzner_labels(cfg, **{NODE_ROLE_LABEL_KEY: "control-plane"})
        protect, ignore_changes, delete_before_replace = server_options(cfg)

        self.token = random.RandomPassword(
            f"{name}-k3s-token",
            length=K3S_TOKEN_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.servers: list[hcloud.Server] = []
        self.public_ips: list[pulumi.Output[str]] = []
        self.private_ips: list[str] = list(cfg.control_plane_ips)
        for node, private_ip in enumerate(cfg.control_plane_ips):
            node_name = f"{physical}-cp-{node + 1}"
            # A primary IP allocated before the server lets its address go into the API
            # certificate (--tls-san) of the very user_data that creates the server.
            public_ip = hcloud.PrimaryIp(
                f"{name}-{node + 1}-ipv4",
                name=f"{node_name}-ipv4",
                type="ipv4",
                assignee_type="server",
                location=cfg.region.location,
                auto_delete=False,
                delete_protection=protect,
                labels=labels,
                opts=pulumi.ResourceOptions(parent=self, protect=protect),
            )
            # The mirror password (a secret config value) joins the token inside user_data,
            # which is secret as a whole.
            password = args.registry_password or pulumi.Output.from_input("")
            user_data = pulumi.Output.secret(
                pulumi.Output.all(public_ip.ip_address, self.token.result, password).apply(
                    lambda values, node=node: checked_user_data(
                        cfg, node, values[0], values[1], values[2] or None
                    )
                )
            )
            server = hcloud.Server(
                f"{name}-{node + 1}",
                name=node_name,
                server_type=cfg.control_plane.server_type,
                image=cfg.control_plane.image,
                location=cfg.region.location,
                ssh_keys=[net.ssh_key.id],
                firewall_ids=[net.firewall_id],
                placement_group_id=net.placement_group_id,
                labels=labels,
                user_data=user_data,
                networks=[hcloud.ServerNetworkArgs(network_id=net.network_id, ip=private_ip)],
                public_nets=[
                    hcloud.ServerPublicNetArgs(
                        ipv4_enabled=True, ipv4=public_ip.id.apply(int), ipv6_enabled=False
                    )
                ],
                delete_protection=protect,
                rebuild_protection=protect,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # Hetzner attaches a server only to a subnet that already exists.
                    depends_on=[net.subnet],
                    protect=protect,
                    ignore_changes=ignore_changes,
                    delete_before_replace=delete_before_replace,
                ),
            )
            self.servers.append(server)
            self.public_ips.append(public_ip.ip_address)

        self.load_balancer_ip: pulumi.Output[str] | None = None
        if cfg.load_balancer.enabled:
            self.load_balancer_ip = self._load_balancer(name, cfg, net, labels)

        self.register_outputs(
            {
                "publicIps": self.public_ips,
                "privateIps": self.private_ips,
                "serverIds": [server.id for server in self.servers],
                "loadBalancerIp": self.load_balancer_ip,
            }
        )

    def _load_balancer(
        self, name: str, cfg: StackConfig, net: RegionNetwork, labels: dict[str, str]
    ) -> pulumi.Output[str]:
        lb_cfg = cfg.load_balancer
        child = pulumi.ResourceOptions(parent=self)
        lb = hcloud.LoadBalancer(
            f"{name}-lb",
            name=f"{prefix(cfg)}-ingress",
            load_balancer_type=lb_cfg.type,
            location=cfg.region.location,
            labels=labels,
            opts=child,
        )
        lb_id = lb.id.apply(int)
        attachment = hcloud.LoadBalancerNetwork(
            f"{name}-lb-net",
            load_balancer_id=lb_id,
            network_id=net.network_id,
            ip=lb_cfg.private_ip,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[net.subnet]),
        )
        for node, server in enumerate(self.servers):
            hcloud.LoadBalancerTarget(
                f"{name}-lb-target-{node + 1}",
                type="server",
                load_balancer_id=lb_id,
                server_id=server.id.apply(int),
                use_private_ip=True,
                # Private targets are refused until the LB itself is in the network.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
            )
        for listen, node_port in ((80, lb_cfg.http_node_port), (443, lb_cfg.https_node_port)):
            hcloud.LoadBalancerService(
                f"{name}-lb-{listen}",
                load_balancer_id=lb.id,
                protocol="tcp",
                listen_port=listen,
                destination_port=node_port,
                opts=child,
            )
        return lb.ipv4
