"""One worker pool: k3s agents of one server type, joining the region's stable API endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import pulumi
import pulumi_hcloud as hcloud

from components.network import RegionNetwork
from config.errors import Problem, SovereignConfigError
from config.models import StackConfig
from render.cloudinit import USER_DATA_CAP, render_agent_user_data
from render.naming import (
    CLOUD_CONTROLLER_LABEL_KEY,
    NODE_ROLE_LABEL_KEY,
    POOL_LABEL_KEY,
    REGION_LABEL_KEY,
    WORKER_ROLE,
    pool_placement_group,
    region_label,
    worker_name,
    worker_server_labels,
)
from render.system_upgrade import VERSION_LABEL_KEY, version_label

# A worker is never rebuilt in place by a boot change: k3s upgrades go through the agent Plan
# (slot 03), and a new boot reaches new servers only.
REPLACING_INPUTS: Final = ["user_data", "image", "ssh_keys"]


def checked_agent_user_data(
    cfg: StackConfig, pool: str, token: str, registry_password: str | None = None
) -> str:
    """Render, refusing (at `up`, with the real secrets) anything over Hetzner's cap."""
    user_data = render_agent_user_data(cfg, pool, token, registry_password)
    size = len(user_data.encode())
    if size > USER_DATA_CAP:
        raise SovereignConfigError(
            [
                Problem(
                    f"sovereign:workers.{pool} user_data",
                    f"{size} bytes",
                    f"at most {USER_DATA_CAP}",
                )
            ]
        )
    return user_data


def live_worker_labels(cfg: StackConfig) -> dict[str, dict[str, str]]:
    """This region's worker servers as Hetzner has them now: server name -> labels."""
    selector = f"{REGION_LABEL_KEY}={region_label(cfg)},{NODE_ROLE_LABEL_KEY}={WORKER_ROLE}"
    result = hcloud.get_servers(with_selector=selector)
    servers = cast(list[hcloud.outputs.GetServersServerResult] | None, result.servers) or []
    return {
        server.name: dict(server.labels or {})
        for server in servers
        if (server.labels or {}).get(NODE_ROLE_LABEL_KEY) == WORKER_ROLE
    }


def live_workers(
    cfg: StackConfig, labels: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """This region's worker servers as Hetzner has them now: server name -> pool."""
    found = live_worker_labels(cfg) if labels is None else labels
    return {server: each.get(POOL_LABEL_KEY, "") for server, each in found.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPoolArgs:
    cfg: StackConfig
    pool: str
    network: RegionNetwork
    # The cluster's join token (secret); it only ever travels inside the secret user_data.
    token: pulumi.Output[str]
    registry_password: pulumi.Output[str] | None = None
    # What the agents join: the control-plane servers (and the API LB's targets on HA).
    after: Sequence[pulumi.Resource] = ()


class WorkerPool(pulumi.ComponentResource):
    """`count` k3s agents with the pool's labels and taints, in a spread group of their own.

    Every name and input derives from the pool alone (never from another pool or the pool's
    position), so a change to one pool's count adds or removes only that pool's servers.
    """

    TYPE: Final = "sovereign:infra:WorkerPool"

    def __init__(
        self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, pool, net = args.cfg, args.pool, args.network
        spec = cfg.workers[pool]
        labels = worker_server_labels(cfg, pool)
        if net.worker_subnet is None:  # pragma: no cover - the network makes it with any pool
            raise AssertionError("worker pools without the workers' subnet")
        subnet_id = net.worker_subnet.id

        placement_group_id: pulumi.Output[int] | None = None
        # An autoscaled pool's group too: the autoscaler puts its servers in it by name.
        self.placement_group: hcloud.PlacementGroup | None = None
        if spec.placement_group and spec.most_servers > 0:
            group = hcloud.PlacementGroup(
                f"{name}-spread",
                name=pool_placement_group(cfg, pool),
                type="spread",
                labels=labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
            placement_group_id = group.id.apply(int)
            self.placement_group = group

        password = args.registry_password or pulumi.Output.from_input("")
        user_data = pulumi.Output.secret(
            pulumi.Output.all(args.token, password).apply(
                lambda v: checked_agent_user_data(cfg, pool, str(v[0]), str(v[1]) or None)
            )
        )
        # The pool's one agent boot: its servers' user_data, and for an autoscaled pool what
        # cluster-autoscaler boots its servers with (slot 06).
        self.user_data: pulumi.Output[str] = user_data
        # What the autoscaler's provider looks up by name when it starts.
        self.provider_needs: list[pulumi.Resource] = [
            net.worker_subnet,
            net.firewall_attachment,
            *([self.placement_group] if self.placement_group is not None else []),
        ]
        self.servers: list[hcloud.Server] = []
        # None for an autoscaled pool: cluster-autoscaler creates and deletes its servers.
        for index in range(spec.static_count):
            server = hcloud.Server(
                f"{name}-{index + 1}",
                name=worker_name(cfg, pool, index),
                server_type=spec.server_type,
                image=spec.image or cfg.control_plane.image,
                location=cfg.region.location,
                ssh_keys=[net.ssh_key.id],
                placement_group_id=placement_group_id,
                labels={
                    **labels,
                    # What the worker runs, as the servers record it (the agent Plan moves it).
                    VERSION_LABEL_KEY: version_label(cfg.control_plane.k3s_version),
                    # Read back at the next preview: who initialised its node.
                    CLOUD_CONTROLLER_LABEL_KEY: cfg.cloud_controller,
                },
                user_data=user_data,
                # A public IPv4 for egress (k3s download, images); the firewall filters it.
                public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=False)],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The region's firewall applies by label (its attachment), before the boot.
                    depends_on=[net.firewall_attachment, *args.after],
                    ignore_changes=list(REPLACING_INPUTS),
                    # The provider echoes user_data back as an output: kept secret there too.
                    additional_secret_outputs=["user_data"],
                ),
            )
            hcloud.ServerNetwork(
                f"{name}-{index + 1}-net",
                server_id=server.id.apply(int),
                subnet_id=subnet_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.servers.append(server)
        self.names: list[str] = [worker_name(cfg, pool, i) for i in range(spec.static_count)]
        self.register_outputs(
            {"names": self.names, "serverIds": [server.id for server in self.servers]}
        )
