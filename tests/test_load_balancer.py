"""The Hetzner load balancer forwards only to ports something listens on: Cilium's Gateway."""

from __future__ import annotations

from typing import Any

from render.cilium import cilium_values, ingress_gateway
from tools.mockrun import Run, evaluate

SERVICE = "hcloud:index/loadBalancerService:LoadBalancerService"
TARGET = "hcloud:index/loadBalancerTarget:LoadBalancerTarget"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
RELEASE = "kubernetes:helm.sh/v3:Release"
WITH_GATEWAY = {"loadBalancer": {"enabled": True}, "cilium": {"gatewayApi": {"enabled": True}}}


def ingress(run: Run, type_: str) -> list[Any]:
    """The ingress load balancer's children; an HA region also has the API load balancer."""
    return [r for r in run.of_type(type_) if "-api-lb" not in r.name]


def run_with(stack: str, overrides: dict[str, Any]) -> Run:
    run = evaluate(stack, overrides)
    assert run.error is None, run.error
    return run


def test_load_balancer_without_a_gateway_is_refused() -> None:
    run = evaluate("primary", {"loadBalancer": {"enabled": True}})
    assert run.registrations == []
    message = str(run.error)
    assert (
        "sovereign:loadBalancer.enabled = true: needs sovereign:cilium.gatewayApi.enabled: true"
        in message
    )
    assert "80/443 to ports 18080/18443" in message


def test_every_lb_port_targets_a_gateway_listener_with_a_health_check() -> None:
    run = run_with("secondary", WITH_GATEWAY)
    gateway = run.one(GATEWAY)
    listeners = {int(item["port"]): item for item in gateway.inputs["spec"]["listeners"]}
    services = {int(s.inputs["listenPort"]): s.inputs for s in ingress(run, SERVICE)}
    assert set(services) == {80, 443}
    for service in services.values():
        port = int(service["destinationPort"])
        assert port in listeners, f"LB forwards to {port}, where no Gateway listener is"
        assert service["protocol"] == "tcp"
        check = service["healthCheck"]
        assert (check["protocol"], int(check["port"])) == ("tcp", port)
        assert int(check["interval"]) > int(check["timeout"]) > 0
        assert int(check["retries"]) >= 1
    assert listeners[int(services[80]["destinationPort"])]["protocol"] == "HTTP"
    tls = listeners[int(services[443]["destinationPort"])]
    assert (tls["protocol"], tls["tls"]["mode"]) == ("TLS", "Passthrough")


def test_gateway_listens_on_the_host_and_waits_for_cilium() -> None:
    run = run_with("primary", WITH_GATEWAY)
    gateway = run.one(GATEWAY)
    assert gateway.inputs["spec"]["gatewayClassName"] == "cilium"
    cilium = next(r for r in run.of_type(RELEASE) if r.inputs["name"] == "cilium")
    assert cilium.urn in gateway.dependencies
    assert run.by_urn(gateway.parent).type == "sovereign:slot:Cilium"
    values = cilium.inputs["values"]["gatewayAPI"]
    assert values == {
        "enabled": True,
        "gatewayClass": {"create": "true"},
        "hostNetwork": {"enabled": True},
    }


def test_targets_are_every_server_over_the_private_network() -> None:
    run = run_with("secondary", WITH_GATEWAY)
    servers = {
        s.urn
        for s in run.of_type("hcloud:index/server:Server")
        if s.inputs["labels"]["catalyst.openova.io/role"] == "control-plane"
    }
    targets = ingress(run, TARGET)
    assert len(targets) == len(servers) == 3
    for target in targets:
        assert target.inputs["usePrivateIp"] is True
        assert any(dep in servers for dep in target.dependencies)


def test_custom_ports_move_listeners_and_lb_targets_together() -> None:
    overrides = {**WITH_GATEWAY, "loadBalancer": {"enabled": True, "httpNodePort": 28080}}
    run = run_with("primary", overrides)
    ports = {int(item["port"]) for item in run.one(GATEWAY).inputs["spec"]["listeners"]}
    targets = {int(s.inputs["destinationPort"]) for s in run.of_type(SERVICE)}
    assert ports == targets == {28080, 18443}


def test_default_gateway_host_ports_are_outside_the_node_port_range() -> None:
    run = run_with("primary", WITH_GATEWAY)
    ports = {int(item["port"]) for item in run.one(GATEWAY).inputs["spec"]["listeners"]}
    assert ports == {18080, 18443}
    assert not any(30000 <= port <= 32767 for port in ports)


def test_a_host_port_inside_the_node_port_range_is_refused() -> None:
    lb = {"enabled": True, "httpNodePort": 30080, "httpsNodePort": 32767}
    run = evaluate("primary", {**WITH_GATEWAY, "loadBalancer": lb})
    assert run.registrations == []
    message = str(run.error)
    for key, value in (("httpNodePort", 30080), ("httpsNodePort", 32767)):
        assert f"sovereign:loadBalancer.{key} = {value}" in message
    assert "outside the NodePort range 30000-32767" in message


def test_no_gateway_object_without_the_load_balancer(primary: Run) -> None:
    assert primary.of_type(GATEWAY) == []
    run = run_with("primary", {"cilium": {"gatewayApi": {"enabled": True}}})
    assert run.of_type(GATEWAY) == []
    assert run.of_type(SERVICE) == []


def test_gateway_values_follow_the_switch() -> None:
    from checks.preflight import parse
    from tools.mockrun import stack_config

    cfg = parse(stack_config("primary"), "primary")
    assert cilium_values(cfg)["gatewayAPI"] == {"enabled": False}
    assert ingress_gateway(cfg) is None


def test_the_ingress_pool_is_targeted_by_label_and_the_gateway_listens_only_there() -> None:
    overrides = {**WITH_GATEWAY, "loadBalancer": {"enabled": True, "pool": "general"}}
    run = run_with("secondary", overrides)
    (target,) = ingress(run, TARGET)
    assert target.inputs["type"] == "label_selector"
    assert target.inputs["usePrivateIp"] is True
    selector = dict(term.split("=", 1) for term in target.inputs["labelSelector"].split(","))
    assert selector == {"openova.io/region": "omantel-hel1-2", "openova.io/pool": "general"}
    # The selector matches every worker of the pool and no control-plane server.
    matched = {
        s.inputs["name"]
        for s in run.of_type("hcloud:index/server:Server")
        if selector.items() <= s.inputs["labels"].items()
    }
    assert matched == {"omantel-hel1-2-general-1", "omantel-hel1-2-general-2"}
    # Envoy's host listeners run on the nodes of that pool only (their k3s node label).
    cilium = next(r for r in run.of_type(RELEASE) if r.inputs["name"] == "cilium")
    nodes = cilium.inputs["values"]["gatewayAPI"]["hostNetwork"]["nodes"]
    assert nodes == {"matchLabels": {"openova.io/pool": "general"}}


def test_an_ingress_pool_that_does_not_exist_or_is_empty_is_refused() -> None:
    run = evaluate("secondary", {**WITH_GATEWAY, "loadBalancer": {"enabled": True, "pool": "edge"}})
    assert run.registrations == []
    assert (
        "sovereign:loadBalancer.pool = 'edge': the name of a pool in sovereign:workers (burst, general)"
        in str(run.error)
    )
    empty = {
        **WITH_GATEWAY,
        "loadBalancer": {"enabled": True, "pool": "general"},
        "workers": {"general": {"count": 0}},
    }
    run = evaluate("secondary", empty)
    assert "general has count 0" in str(run.error)
