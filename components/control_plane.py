"""k3s control-plane servers at fixed private IPs, their public IPs and the optional LB."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, cast

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud
import pulumi_random as random

from components.kubeconfig import WAIT_SCRIPT
from components.network import RegionNetwork
from components.pki import ClusterPki
from config.day2 import BackupCredentials
from config.errors import Problem, SovereignConfigError
from config.models import StackConfig
from config.support import minor
from render.apiserver import DEPLOYER_BINDING_LABEL_KEY
from render.autoscaler import pool_server_selector
from render.cloudinit import (
    API_ENDPOINT_LABEL_KEY,
    API_PORT,
    K3S_TOKEN_LENGTH,
    SECRETS_ENCRYPTION_LABEL_KEY,
    USER_DATA_CAP,
    BootMode,
    ServerBoot,
    api_endpoint_label,
    api_load_balancer,
    render_user_data,
)
from render.naming import (
    API_PUBLIC_LABEL_KEY,
    CLOUD_CONTROLLER_LABEL_KEY,
    NODE_ROLE_LABEL_KEY,
    REGION_LABEL_KEY,
    WORKER_ROLE,
    api_public_label,
    hetzner_labels,
    prefix,
    region_label,
)
from render.system_upgrade import (
    CILIUM_FIRST_LABEL_KEY,
    CILIUM_LABEL_KEY,
    VERSION_LABEL_KEY,
    cilium_first_from_label,
    cilium_from_label,
    version_from_label,
    version_label,
)
from render.vcluster import mode_labels as vcluster_mode_labels
from render.vcluster import storage_labels as vcluster_storage_labels

# Changing any of these makes Hetzner rebuild the server: a silent replacement of a running
# control plane. They are ignored except on the one server sovereign:replacement.server names.
REPLACING_INPUTS: Final = ["user_data", "image", "ssh_keys"]
# Load balancer health checks (terraform-provider-hcloud docs/resources/load_balancer_service.md:
# protocol tcp|http, port, interval, timeout, retries).
LB_HEALTH_INTERVAL_SECONDS: Final = 10
LB_HEALTH_TIMEOUT_SECONDS: Final = 5
LB_HEALTH_RETRIES: Final = 3
# Bound on deleting a replaced server's Node: k3s removes the etcd member first (seconds on a
# healthy cluster of two live members).
REMOVE_NODE_SECONDS: Final = 300
# How the server first booted; read back so a cp-1 that joined keeps rendering as a joiner.
BOOT_LABEL_KEY: Final = "openova.io/k3s-boot"


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A control-plane server as Hetzner reports it now (an invoke, at preview and at up)."""

    labels: Mapping[str, str]
    delete_protection: bool


LiveServers = Mapping[str, LiveServer]


def server_name(cfg: StackConfig, node: int) -> str:
    return f"{prefix(cfg)}-cp-{node + 1}"


def live_control_plane(cfg: StackConfig) -> dict[str, LiveServer]:
    """This region's control-plane servers as they exist in Hetzner, by name (empty when new)."""
    selector = f"{REGION_LABEL_KEY}={region_label(cfg)},{NODE_ROLE_LABEL_KEY}=control-plane"
    result = hcloud.get_servers(with_selector=selector)
    servers = cast(list[hcloud.outputs.GetServersServerResult] | None, result.servers) or []
    # The selector already excludes workers; a reply that still lists one (an older label set,
    # or a stand-in for the API) must not make a worker count as a control-plane server.
    return {
        server.name: LiveServer(dict(server.labels or {}), bool(server.delete_protection))
        for server in servers
        if (server.labels or {}).get(NODE_ROLE_LABEL_KEY) != WORKER_ROLE
    }


def _read_label(live: LiveServers, key: str, parse: Callable[[str], str | None]) -> dict[str, str]:
    """server name -> its label `key` as `parse` reads it, where the server carries a valid one."""
    values: dict[str, str] = {}
    for name, server in live.items():
        value = parse(server.labels.get(key, ""))
        if value is not None:
            values[name] = value
    return values


def recorded_versions(cfg: StackConfig, live: LiveServers) -> dict[str, str]:
    """server name -> the k3s version the last `up` set on it (its label)."""
    return _read_label(live, VERSION_LABEL_KEY, version_from_label)


def recorded_cilium(live: LiveServers, record: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where -> the Cilium chart version that runs.

    The region's record (components/record.py), written only after a release succeeded; else,
    for a region deployed before the record existed, the label earlier versions of this program
    set on the servers (the version the last `up` asked for).
    """
    version = cilium_from_label((record or {}).get(CILIUM_LABEL_KEY, ""))
    if version is not None:
        return {"record": version}
    return _read_label(live, CILIUM_LABEL_KEY, cilium_from_label)


def recorded_cilium_first(live: LiveServers) -> dict[str, str]:
    """server name -> the Cilium minor the region was first installed with (its label)."""
    return _read_label(live, CILIUM_FIRST_LABEL_KEY, cilium_first_from_label)


def secrets_encryption(live: LiveServers) -> bool:
    """Whether new servers start k3s with `secrets-encryption` (a k3s critical value).

    k3s lists `--secrets-encryption` among the "Critical Configuration Values" that "must be set
    to the same value on all servers in the cluster. Failure to do so will cause new servers to
    fail to join the cluster when using embedded etcd" (docs.k3s.io/cli/server, checked
    2026-12-04). A new region has it from cluster init; a live one has it exactly when its
    servers say so (`openova.io/secrets-encryption=true`): a region created before it was on
    keeps it off for every joiner and replacement until the operator turned it on (docs/day2.md).
    """
    if not live:
        return True
    return any(
        server.labels.get(SECRETS_ENCRYPTION_LABEL_KEY) == "true" for server in live.values()
    )


def replacing(cfg: StackConfig, node: int) -> bool:
    return cfg.control_plane.allow_replacement and cfg.replacement.server == f"cp-{node + 1}"


def boot_mode(cfg: StackConfig, node: int, live: LiveServers) -> BootMode:
    """init starts the cluster; every other server, and a replaced cp-1 of HA, joins it."""
    if node > 0:
        return "join"
    if replacing(cfg, 0):
        return "join" if cfg.control_plane.count > 1 else "restore"
    recorded = live.get(server_name(cfg, 0))
    mode = recorded.labels.get(BOOT_LABEL_KEY) if recorded is not None else None
    return mode if mode in ("join", "restore") else "init"  # type: ignore[return-value]


def checked_user_data(
    cfg: StackConfig, node: int, public_ip: str, token: str, boot: ServerBoot | None = None
) -> str:
    """Render, refusing (at `up`, with the real addresses) anything over Hetzner's cap."""
    user_data = render_user_data(cfg, node, public_ip, token, boot)
    size = len(user_data.encode())
    if size > USER_DATA_CAP:
        raise SovereignConfigError(
            [Problem(f"server {node + 1} user_data", f"{size} bytes", f"at most {USER_DATA_CAP}")]
        )
    return user_data


@dataclass(frozen=True, slots=True)
class ServerOptions:
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    # Hetzner's own delete/rebuild protection, which refuses a replacement's delete.
    hetzner_protection: bool


def server_options(cfg: StackConfig, node: int, live: LiveServers | None = None) -> ServerOptions:
    """At most one server per `up` can be replaced: the one sovereign:replacement.server names.

    Hetzner refuses to delete a server whose protection is on, so the named server's protection
    is lifted first: while Hetzner still reports it protected, this `up` only lifts it and keeps
    the replacing inputs ignored; the next `up` replaces it.
    """
    protect = cfg.control_plane.protect
    if not replacing(cfg, node):
        return ServerOptions(protect, list(REPLACING_INPUTS), False, protect)
    current = (live or {}).get(server_name(cfg, node))
    if current is not None and current.delete_protection:
        return ServerOptions(False, list(REPLACING_INPUTS), False, False)
    # The private IP is fixed, so the old server must go before its successor can take it.
    return ServerOptions(False, [], True, False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlaneArgs:
    cfg: StackConfig
    network: RegionNetwork
    pki: ClusterPki
    live: LiveServers = field(default_factory=dict[str, LiveServer])
    backup_credentials: BackupCredentials | None = None
    # The registry mirror's password (a secret config value) for registries.yaml.
    registry_password: pulumi.Output[str] | None = None
    # The Cilium minor the region was first installed with (checks/upgrades.first_cilium_line).
    cilium_first: str | None = None
    # cp-1's first boot wrote the deployer binding (components/record.binding_source == "boot").
    binding_at_boot: bool = True


class ControlPlane(pulumi.ComponentResource):
    """One or three k3s servers; the first initialises embedded etcd, the others join it."""

    TYPE: Final = "sovereign:infra:ControlPlane"

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, net = args.cfg, args.network
        labels = hetzner_labels(cfg, **{NODE_ROLE_LABEL_KEY: "control-plane"})

        # The API endpoint exists before the servers: its addresses go into every server's
        # certificate (tls-san) and cp-2/cp-3 join through its private address.
        self.api_public_ip: pulumi.Output[str] | None = None
        api_lb: tuple[hcloud.LoadBalancer, hcloud.LoadBalancerNetwork] | None = None
        api_targets_after: list[pulumi.Resource] = []
        if api_load_balancer(cfg):
            api_lb = self._api_load_balancer(name, cfg, net, labels)
            self.api_public_ip = api_lb[0].ipv4
            api_targets_after.append(api_lb[1])
        api_ip: pulumi.Output[str | None] = (
            self.api_public_ip if self.api_public_ip is not None else pulumi.Output.from_input(None)
        )
        # The mirror password (a secret config value) joins the token inside user_data, which
        # is secret as a whole.
        password = args.registry_password or pulumi.Output.from_input("")
        credentials: pulumi.Output[tuple[str, str] | None] = pulumi.Output.from_input(None)
        if args.backup_credentials is not None:
            credentials = pulumi.Output.all(
                args.backup_credentials.access_key, args.backup_credentials.secret_key
            ).apply(lambda v: (str(v[0]), str(v[1])))
        # Decided for the whole region from the live servers: every server must agree on it.
        encrypt = secrets_encryption(args.live)
        self.boot_modes: list[BootMode] = [
            boot_mode(cfg, node, args.live) for node in range(cfg.control_plane.count)
        ]
        # This `up` replaces cp-1 by one that restores etcd from a snapshot.
        self.restoring: bool = self.boot_modes[0] == "restore" and replacing(cfg, 0)

        self.token = random.RandomPassword(
            f"{name}-k3s-token",
            length=K3S_TOKEN_LENGTH,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # A new value for each replacement request (setting, changing or clearing
        # sovereign:replacement.*), written into the named server's user_data only: that replacing
        # input then differs from the running server's, so exactly that server is replaced.
        self.replacement_generation = random.RandomId(
            f"{name}-replacement",
            byte_length=4,
            keepers={
                "server": cfg.replacement.server or "",
                "restoreSnapshot": cfg.replacement.restore_snapshot or "",
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.servers: list[hcloud.Server] = []
        self.private_ips: list[str] = list(cfg.control_plane_ips)
        # A primary IP allocated before the server lets its address go into the API certificate
        # (--tls-san) of the very user_data that creates the server.
        primary_ips = [
            hcloud.PrimaryIp(
                f"{name}-{node + 1}-ipv4",
                name=f"{server_name(cfg, node)}-ipv4",
                type="ipv4",
                # No assignee here: the server's public_net assigns it, as the SDK's own example
                # does. An assignee_type without an assignee_id made the provider warn on every
                # run and, since Hetzner answers `unassigned` for such an IP, shows an update on
                # each second `up`; both assignee fields are computed (pulumi-hcloud 1.43.3
                # primary_ip.py: Optional inputs, always-set outputs), so none is diffed.
                location=cfg.region.location,
                auto_delete=False,
                delete_protection=cfg.control_plane.protect,
                labels=labels,
                opts=pulumi.ResourceOptions(parent=self, protect=cfg.control_plane.protect),
            )
            for node in range(cfg.control_plane.count)
        ]
        self.public_ips: list[pulumi.Output[str]] = [ip.ip_address for ip in primary_ips]
        for node, private_ip in enumerate(cfg.control_plane_ips):
            node_name = server_name(cfg, node)
            public_ip = primary_ips[node]
            mode = self.boot_modes[node]
            options = server_options(cfg, node, args.live)
            generation: pulumi.Output[str | None] = (
                self.replacement_generation.hex
                if replacing(cfg, node)
                else pulumi.Output.from_input(None)
            )
            user_data = pulumi.Output.secret(
                pulumi.Output.all(
                    public_ip.ip_address,
                    self.token.result,
                    args.pki.ca_files,
                    api_ip,
                    credentials,
                    password,
                    generation,
                ).apply(
                    lambda v, node=node, mode=mode: checked_user_data(
                        cfg,
                        node,
                        v[0],
                        v[1],
                        ServerBoot(
                            mode=mode,
                            api_public_ip=v[3],
                            ca_files=v[2] if mode != "join" else {},
                            restore_credentials=v[4] if mode == "restore" else None,
                            registry_password=v[5] or None,
                            replacement_generation=v[6],
                            secrets_encryption=encrypt,
                        ),
                    )
                )
            )
            # The dead server's Node and etcd member go before its successor joins under the
            # same name; only on the `up` that really replaces it.
            removed: list[pulumi.Resource] = []
            if cfg.control_plane.count > 1 and replacing(cfg, node) and not options.ignore_changes:
                removed.append(
                    self._remove_node(name, cfg, node, args.pki, api_ip, self.public_ips)
                )
            server = hcloud.Server(
                f"{name}-{node + 1}",
                name=node_name,
                server_type=cfg.control_plane.server_type,
                image=cfg.control_plane.image,
                location=cfg.region.location,
                ssh_keys=[net.ssh_key.id],
                placement_group_id=net.placement_group_id,
                labels={
                    **labels,
                    # Read back at the next preview: the upgrade steps and how cp-1 booted (the
                    # Cilium that runs is recorded after its release: components/record.py).
                    VERSION_LABEL_KEY: version_label(cfg.control_plane.k3s_version),
                    CILIUM_FIRST_LABEL_KEY: args.cilium_first or minor(cfg.cilium.version) or "",
                    BOOT_LABEL_KEY: mode,
                    # Whether k3s encrypts Secrets at rest here: joiners must match it.
                    SECRETS_ENCRYPTION_LABEL_KEY: "true" if encrypt else "false",
                    # The deployer binding came with cp-1's first boot (components/record.py).
                    **({DEPLOYER_BINDING_LABEL_KEY: "boot"} if args.binding_at_boot else {}),
                    # Read back at the next preview: the endpoint the certificates name.
                    API_ENDPOINT_LABEL_KEY: api_endpoint_label(cfg),
                    # And how each vCluster runs (root or rootless), which a live one keeps.
                    **vcluster_mode_labels(cfg),
                    # And each vCluster's StorageClass, which a live one keeps.
                    **vcluster_storage_labels(cfg),
                    # And who initialised its node (checks/hetzner.py refuses a switch).
                    CLOUD_CONTROLLER_LABEL_KEY: cfg.cloud_controller,
                },
                user_data=user_data,
                networks=[hcloud.ServerNetworkArgs(network_id=net.network_id, ip=private_ip)],
                public_nets=[
                    hcloud.ServerPublicNetArgs(
                        ipv4_enabled=True, ipv4=public_ip.id.apply(int), ipv6_enabled=False
                    )
                ],
                delete_protection=options.hetzner_protection,
                rebuild_protection=options.hetzner_protection,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # Hetzner attaches a server only to a subnet that already exists.
                    # The firewall attachment exists first, so Hetzner applies the firewall
                    # to the server (it carries the selected label) as it is created.
                    depends_on=[net.subnet, net.firewall_attachment, *api_targets_after, *removed],
                    protect=options.protect,
                    ignore_changes=options.ignore_changes,
                    delete_before_replace=options.delete_before_replace,
                    # The k3s token and CA keys: secret as an output too, and visible as such
                    # to the policy pack (no-plain-secret-in-user-data).
                    additional_secret_outputs=["user_data"],
                ),
            )
            self.servers.append(server)

        self.api_targets: list[hcloud.LoadBalancerTarget] = []
        if api_lb is not None:
            self.api_targets = self._server_targets(f"{name}-api-lb", *api_lb)
        self.node_names: list[str] = [
            server_name(cfg, node) for node in range(cfg.control_plane.count)
        ]

        self.load_balancer_ip: pulumi.Output[str] | None = None
        if cfg.load_balancer.enabled:
            self.load_balancer_ip = self._load_balancer(name, cfg, net, labels)

        self.register_outputs(
            {
                "publicIps": self.public_ips,
                "privateIps": self.private_ips,
                "serverIds": [server.id for server in self.servers],
                "loadBalancerIp": self.load_balancer_ip,
                "apiPublicIp": self.api_public_ip,
            }
        )

    def _remove_node(
        self,
        name: str,
        cfg: StackConfig,
        node: int,
        pki: ClusterPki,
        api_public_ip: pulumi.Output[str | None],
        public_ips: list[pulumi.Output[str]],
    ) -> command.local.Command:
        """Delete the replaced server's Node (k3s then removes its etcd member), on the deployer.

        Reached through the API load balancer, else through a server that is not the one replaced.
        """
        survivor = public_ips[1 if node == 0 else 0]
        environment = pulumi.Output.all(
            api_public_ip,
            survivor,
            pki.server_ca_pem,
            pki.client_cert_pem,
            pki.client_key_pem,
        ).apply(
            lambda v: {
                "SOVEREIGN_API": f"https://{v[0] or v[1]}:{API_PORT}",
                "SOVEREIGN_CA": str(v[2]),
                "SOVEREIGN_CERT": str(v[3]),
                "SOVEREIGN_KEY": str(v[4]),
                "SOVEREIGN_REMOVE_NODE": server_name(cfg, node),
                "SOVEREIGN_TIMEOUT": str(REMOVE_NODE_SECONDS),
            }
        )
        return command.local.Command(
            f"{name}-remove-cp-{node + 1}",
            create=WAIT_SCRIPT,
            interpreter=["python3", "-c"],
            environment=pulumi.Output.secret(environment),
            # Runs again only for a new replacement request.
            triggers=[self.replacement_generation.hex],
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                custom_timeouts=pulumi.CustomTimeouts(create=f"{REMOVE_NODE_SECONDS // 60 + 5}m"),
            ),
        )

    def _private_load_balancer(
        self,
        key: str,
        *,
        physical_name: str,
        lb_type: str,
        private_ip: str,
        cfg: StackConfig,
        net: RegionNetwork,
        labels: dict[str, str],
        public_interface: bool = True,
    ) -> tuple[hcloud.LoadBalancer, hcloud.LoadBalancerNetwork]:
        """A Hetzner load balancer attached to the region's network at a pinned address."""
        lb = hcloud.LoadBalancer(
            key,
            name=physical_name,
            load_balancer_type=lb_type,
            location=cfg.region.location,
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        attachment = hcloud.LoadBalancerNetwork(
            f"{key}-net",
            load_balancer_id=lb.id.apply(int),
            network_id=net.network_id,
            ip=private_ip,
            enable_public_interface=public_interface,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[net.subnet]),
        )
        return lb, attachment

    def _server_targets(
        self, key: str, lb: hcloud.LoadBalancer, attachment: pulumi.Resource
    ) -> list[hcloud.LoadBalancerTarget]:
        """Every control-plane server, reached over the private network."""
        return [
            hcloud.LoadBalancerTarget(
                f"{key}-target-{node + 1}",
                type="server",
                load_balancer_id=lb.id.apply(int),
                server_id=server.id.apply(int),
                use_private_ip=True,
                # Private targets are refused until the LB itself is in the network.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
            )
            for node, server in enumerate(self.servers)
        ]

    def _api_load_balancer(
        self, name: str, cfg: StackConfig, net: RegionNetwork, labels: dict[str, str]
    ) -> tuple[hcloud.LoadBalancer, hcloud.LoadBalancerNetwork]:
        """One stable API address in front of every server; unhealthy servers leave rotation."""
        lb, attachment = self._private_load_balancer(
            f"{name}-api-lb",
            physical_name=f"{prefix(cfg)}-api",
            lb_type=cfg.api.load_balancer_type,
            private_ip=cfg.api.private_ip,
            cfg=cfg,
            net=net,
            # Hetzner firewalls do not filter load balancers: with a public interface this one
            # serves the API to the internet, and says so for the policy pack
            # (no-public-api-load-balancer); without one (the default) only the network reaches it.
            labels={**labels, API_PUBLIC_LABEL_KEY: api_public_label(cfg)},
            public_interface=cfg.api.public,
        )
        hcloud.LoadBalancerService(
            f"{name}-api-lb-{API_PORT}",
            load_balancer_id=lb.id,
            protocol="tcp",
            listen_port=API_PORT,
            destination_port=API_PORT,
            health_check=hcloud.LoadBalancerServiceHealthCheckArgs(
                protocol="tcp", port=API_PORT, interval=5, timeout=3, retries=2
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return lb, attachment

    def _load_balancer(
        self, name: str, cfg: StackConfig, net: RegionNetwork, labels: dict[str, str]
    ) -> pulumi.Output[str]:
        lb_cfg = cfg.load_balancer
        child = pulumi.ResourceOptions(parent=self)
        lb, attachment = self._private_load_balancer(
            f"{name}-lb",
            physical_name=f"{prefix(cfg)}-ingress",
            lb_type=lb_cfg.type,
            private_ip=lb_cfg.private_ip,
            cfg=cfg,
            net=net,
            labels=labels,
        )
        if lb_cfg.pool is None:
            self._server_targets(f"{name}-lb", lb, attachment)
        else:
            # The pool's servers come and go with its count (and the autoscaler): a label
            # selector follows them without a target per server.
            hcloud.LoadBalancerTarget(
                f"{name}-lb-target-{lb_cfg.pool}",
                type="label_selector",
                load_balancer_id=lb.id.apply(int),
                label_selector=pool_server_selector(cfg, lb_cfg.pool),
                use_private_ip=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
            )
        # The targets listen there through Cilium's Gateway in host network mode (preflight
        # refuses a load balancer without it). The TCP health check keeps a node whose envoy
        # is not (yet) listening out of rotation, so no request goes to a closed port.
        for listen, node_port in ((80, lb_cfg.http_node_port), (443, lb_cfg.https_node_port)):
            hcloud.LoadBalancerService(
                f"{name}-lb-{listen}",
                load_balancer_id=lb.id,
                protocol="tcp",
                listen_port=listen,
                destination_port=node_port,
                health_check=hcloud.LoadBalancerServiceHealthCheckArgs(
                    protocol="tcp",
                    port=node_port,
                    interval=LB_HEALTH_INTERVAL_SECONDS,
                    timeout=LB_HEALTH_TIMEOUT_SECONDS,
                    retries=LB_HEALTH_RETRIES,
                ),
                opts=child,
            )
        return lb.ipv4
