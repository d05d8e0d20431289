"""What Hetzner sells where, and a load balancer that forwards only to listening ports."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from config import grammar
from config.errors import Problem
from config.models import StackConfig
from config.server_types import CATALOGUE, Catalogue
from render.cloudinit import api_load_balancer
from render.naming import CLOUD_CONTROLLER_LABEL_KEY


def server_type_problems(cfg: StackConfig, catalogue: Catalogue = CATALOGUE) -> list[Problem]:
    """Refuse a type Hetzner no longer sells in the stack's location, naming its successor."""
    server_type, location = cfg.control_plane.server_type, cfg.region.location
    why = catalogue.refusal(server_type, location)
    if why is None:
        return []
    return [Problem("sovereign:controlPlane.serverType", repr(server_type), why)]


def load_balancer_problems(cfg: StackConfig) -> list[Problem]:
    """The load balancer forwards to the Gateway's host listeners, which need the Gateway API.

    Without it nothing listens on the target ports: Hetzner would forward 80/443 to closed
    ports (every target unhealthy, every request refused).
    """
    if not cfg.load_balancer.enabled or cfg.cilium.gateway_api.enabled:
        return []
    return [
        Problem(
            "sovereign:loadBalancer.enabled",
            "true",
            "needs sovereign:cilium.gatewayApi.enabled: true: the load balancer forwards 80/443 "
            f"to ports {cfg.load_balancer.http_node_port}/{cfg.load_balancer.https_node_port}, "
            "where only Cilium's Gateway (host network mode) listens; without it nothing "
            "would answer there",
        )
    ]


def api_public_problems(cfg: StackConfig) -> list[Problem]:
    """The whole internet on 6443 only when the stack says so with sovereign:api.public: true."""
    world = grammar.world_families([ipaddress.ip_network(c) for c in cfg.access.api_sources])
    if cfg.api.public or not world:
        return []
    return [
        Problem(
            "sovereign:access.apiAllowedCidrs",
            repr(cfg.access.api_sources),
            f"sources short of the whole internet (these cover {' and '.join(world)}): list "
            "the deployer's and operators' addresses, or set sovereign:api.public: true to "
            "say the API is meant to be public (every preview then warns)",
        )
    ]


def api_public_notice(cfg: StackConfig) -> str | None:
    """What every preview and up of a public-API stack says, for the endpoint it really has."""
    if not cfg.api.public:
        return None
    if api_load_balancer(cfg):
        return (
            "sovereign:api.public is true: the Kubernetes API answers the whole internet on "
            "6443 (the API load balancer's public interface; Hetzner firewalls do not filter "
            "load balancers). Only a client certificate or token stands in the way; set it to "
            "false and deploy from inside the region's network (a runner or a WireGuard peer) "
            "to close it"
        )
    sources = cfg.access.api_sources
    world = grammar.world_families([ipaddress.ip_network(c) for c in sources])
    reach = (
        f"which covers {' and '.join(world)}, the whole internet: only a client certificate "
        "or token stands in the way"
        if world
        else "no wider: api.public opens nothing more here"
    )
    return (
        "sovereign:api.public is true, but this region has no API load balancer (one server, "
        "or sovereign:api.loadBalancer: false): the API answers on 6443 at the servers' own "
        "addresses, through the Hetzner firewall, to sovereign:access.apiAllowedCidrs "
        f"({', '.join(sources)}), {reach}"
    )


def cloud_controller_problems(
    cfg: StackConfig, live: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """Refuse a cloud controller other than the one the live servers booted with (name ->
    Hetzner labels, control plane and workers).

    A node's providerID is written once, by whichever controller initialises it (k3s's own:
    `k3s://<node>`; the Hetzner CCM: `hcloud://<server id>`), and the k3s flags that choose live
    in user_data, which a running server never re-reads (ignore_changes). So switching a live
    region is a per-node procedure, not a config change; a server without the label booted
    before issue 19, with k3s's built-in controller.
    """
    wanted = cfg.cloud_controller
    booted = {
        server: labels.get(CLOUD_CONTROLLER_LABEL_KEY, "k3s") for server, labels in live.items()
    }
    other = sorted(server for server, controller in booted.items() if controller != wanted)
    if not other:
        return []
    if wanted == "hetzner":
        how = (
            "these servers booted with k3s's built-in cloud controller (no "
            f"{CLOUD_CONTROLLER_LABEL_KEY}=hetzner label), which set their providerID for "
            "good. Keep it for now with sovereign:cloudController: k3s (no Hetzner CCM, "
            "LoadBalancer Services get no address), or hand each node over first "
            "(docs/day2.md, 'Handing nodes to the Hetzner CCM')"
        )
    else:
        how = (
            "these servers booted for the Hetzner CCM (kubelet cloud-provider=external): "
            "without it their nodes stay tainted uninitialized; keep "
            "sovereign:cloudController: hetzner"
        )
    return [
        Problem(
            "sovereign:cloudController",
            repr(wanted),
            f"{', '.join(other)}: {how}",
        )
    ]
