"""System pods: requests the scheduler sees, and namespaces that admit only webhooks and metrics."""

from __future__ import annotations

from typing import Any

import pytest

from checks import rendered as checks
from checks.network_policy import allowed, entity, load, pod
from checks.preflight import parse
from render.helm import RenderedObject
from render.manifests import pod_templates
from render.system_pods import SYSTEM_NAMESPACE_PORTS
from tools.mockrun import Run, evaluate, stack_config
from tools.plan import declared_objects

GATEWAY_ON = {"cilium": {"gatewayApi": {"enabled": True}}, "loadBalancer": {"enabled": True}}


def rendered_for(
    stack: str, overrides: dict[str, Any] | None = None
) -> list[checks.RenderedRelease]:
    raw = {**stack_config(stack), **(overrides or {})}
    return checks.render_releases(parse(raw, stack))


@pytest.mark.parametrize(("stack", "overrides"), [("primary", GATEWAY_ON), ("secondary", None)])
def test_every_rendered_pod_asks_for_cpu_and_memory(
    stack: str, overrides: dict[str, Any] | None
) -> None:
    rendered = rendered_for(stack, overrides)
    owners = {p.owner.ref for r in rendered for p in pod_templates(r.objects)}
    # The system pods the issue names are among them (envoy only exists with its DaemonSet on).
    assert {
        "DaemonSet/cilium",
        "DaemonSet/cilium-envoy",
        "Deployment/cilium-operator",
        "Deployment/cert-manager",
        "Deployment/cert-manager-webhook",
        "Deployment/cert-manager-cainjector",
        "Job/cert-manager-startupapicheck",
        "Deployment/system-upgrade-controller",
    } <= owners
    assert checks.request_problems(rendered) == []


def test_a_pod_without_requests_is_a_problem() -> None:
    rendered = rendered_for("primary")
    cilium = next(r for r in rendered if r.spec.name == "cilium")
    stripped: list[RenderedObject] = []
    for obj in cilium.objects:
        if obj.ref == "Deployment/cilium-operator":
            doc: Any = {**obj.doc}
            spec = {**doc["spec"]["template"]["spec"]}
            spec["containers"] = [{**c, "resources": {}} for c in spec["containers"]]
            doc["spec"] = {**doc["spec"], "template": {**doc["spec"]["template"], "spec": spec}}
            obj = RenderedObject(obj.template, doc, obj.release_namespace)
        stripped.append(obj)
    problems = checks.request_problems([checks.RenderedRelease(cilium.spec, tuple(stripped))])
    assert [p.path for p in problems] == [
        "release cilium (slot 01) Deployment/cilium-operator spec.template.spec.containers[0]"
    ]
    assert "cpu and memory missing" in problems[0].allowed


def test_open_ports_are_the_rendered_webhook_and_metrics_ports() -> None:
    # What the policies open is exactly what the pods serve: the port a webhook Service targets
    # and every container port named for metrics.
    for release in rendered_for("primary"):
        if release.spec.namespace not in SYSTEM_NAMESPACE_PORTS:
            continue
        services = {o.name: o.doc for o in release.objects if o.kind == "Service"}
        webhook_services = {
            str(hook["clientConfig"]["service"]["name"])
            for o in release.objects
            if o.kind.endswith("WebhookConfiguration")
            for hook in o.doc["webhooks"]
        }
        ports: dict[str, set[int]] = {"webhook": set(), "metrics": set()}
        for p in pod_templates(release.objects):
            for container in p.spec["containers"]:
                for port in container.get("ports") or []:
                    if "metrics" in port.get("name", ""):
                        ports["metrics"].add(port["containerPort"])
                    targeted = any(
                        sp.get("targetPort") == port.get("name")
                        for name in webhook_services
                        for sp in services[name]["spec"]["ports"]
                        if sp["name"] != "metrics"
                    )
                    if targeted and p.owner.name in webhook_services:
                        ports["webhook"].add(port["containerPort"])
        expected = SYSTEM_NAMESPACE_PORTS[release.spec.namespace]
        assert {k: set(v) for k, v in expected.items()} == ports, release.spec.name


API = entity("kube-apiserver")
REMOTE = entity("remote-node")
HOST = entity("host")
DMZ = pod("dmz-web", "dmz", app="web")
SCRAPER = pod("prometheus", "kube-system", app="prometheus")
WEBHOOK = pod("webhook", "cert-manager", **{"app.kubernetes.io/component": "webhook"})
CONTROLLER = pod("controller", "cert-manager", **{"app.kubernetes.io/component": "controller"})
SUC = pod("suc", "system-upgrade", **{"app.kubernetes.io/name": "system-upgrade-controller"})

SYSTEM_TABLE = [
    (API, WEBHOOK, 10250, True),  # the API server calls the webhook, from its host
    (REMOTE, WEBHOOK, 10250, True),  # ... or from another server of an HA region
    (SCRAPER, WEBHOOK, 9402, True),
    (SCRAPER, CONTROLLER, 9402, True),
    (HOST, CONTROLLER, 9403, True),  # the kubelet's probe
    (REMOTE, CONTROLLER, 9403, False),
    (SCRAPER, CONTROLLER, 9403, False),
    (SCRAPER, WEBHOOK, 6080, False),
    (SCRAPER, SUC, 8080, False),
    (API, SUC, 8080, False),
    (DMZ, WEBHOOK, 10250, False),  # a tenant zone's egress does not reach it
]


def test_system_namespaces_admit_only_webhooks_and_metrics(primary: Run) -> None:
    loaded = load(doc for _, doc in declared_objects(primary))
    wrong = [
        f"{src.name} -> {dst.name}:{port}"
        for src, dst, port, want in SYSTEM_TABLE
        if allowed(loaded, src, dst, port) != want
    ]
    assert wrong == []
    run = evaluate("secondary")
    assert run.error is None
    loaded = load(doc for _, doc in declared_objects(run))
    assert not allowed(loaded, SCRAPER, SUC, 8080)
