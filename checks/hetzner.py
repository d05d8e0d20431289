"""What Hetzner sells where, and a load balancer that forwards only to listening ports."""

from __future__ import annotations

from config.errors import Problem
from config.models import StackConfig
from config.server_types import CATALOGUE, Catalogue


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
