"""What the charts really deploy, rendered by Helm's own engine, held to the bar of the inputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import rendered as checks
from checks.preflight import parse
from config.errors import SovereignConfigError
from config.models import DEFAULT_MIRROR_PROJECTS, Image, StackConfig
from render import cloudinit
from render.helm import RenderedObject, RenderError, render_chart
from render.manifests import images, is_pinned, kinds, pod_templates, registry_of
from render.pod_security import evaluate as pss_evaluate
from render.releases import releases
from render.vcluster import coredns_pods
from tools.mockrun import Run, SecretValue, evaluate, stack_config
from tools.plan import declared_objects

RELEASE = "kubernetes:helm.sh/v3:Release"
SERVER = "hcloud:index/server:Server"


def cfg_of(stack: str, overrides: dict[str, Any] | None = None) -> Any:
    raw = stack_config(stack)
    for key, value in (overrides or {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse(raw, stack)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[checks.RenderedRelease]]:
    return {stack: checks.render_releases(cfg_of(stack)) for stack in ("primary", "secondary")}


def by_name(releases_: list[checks.RenderedRelease], name: str) -> checks.RenderedRelease:
    return next(r for r in releases_ if r.spec.name == name)


def obj(release: checks.RenderedRelease, kind: str, name: str) -> RenderedObject:
    return next(o for o in release.objects if (o.kind, o.name) == (kind, name))


# --- the committed stacks pass every check ----------------------------------------------------


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_committed_stacks_pass_every_rendered_check(
    stack: str, rendered: dict[str, list[checks.RenderedRelease]], primary: Run, secondary: Run
) -> None:
    run = primary if stack == "primary" else secondary
    declared = declared_objects(run)
    assert {doc["kind"] for _, doc in declared} == {
        "Namespace",
        "NetworkPolicy",
        "CiliumClusterwideNetworkPolicy",
        "Plan",
        "ResourceQuota",
        "LimitRange",
        "CiliumNetworkPolicy",
        # kube-system/hcloud, the cluster's Hetzner token (stringData is secret), and on the
        # secondary the autoscaler's cluster config.
        "Secret",
    }
    assert checks.rendered_problems(cfg_of(stack), rendered[stack], declared) == []


def test_the_releases_rendered_are_the_releases_declared(primary: Run, secondary: Run) -> None:
    for stack, run in (("primary", primary), ("secondary", secondary)):
        registered = {r.inputs["name"]: r.inputs for r in run.of_type(RELEASE)}
        specs = releases(cfg_of(stack))
        assert sorted(registered) == sorted(s.name for s in specs)
        for spec in specs:
            inputs = registered[spec.name]
            assert inputs["values"] == spec.values
            assert (inputs["chart"], inputs["version"], inputs["namespace"]) == (
                f"render/charts/{spec.chart.package.name}",
                spec.chart.version,
                spec.namespace,
            )


def test_rendering_needs_no_sibling_folder() -> None:
    spec = releases(cfg_of("primary"))[0]
    assert "shared" not in spec.chart.package.parts
    assert spec.chart.package.is_relative_to(Path(__file__).resolve().parent.parent)


def test_helm_refuses_values_outside_the_charts_schema() -> None:
    spec = next(s for s in releases(cfg_of("primary")) if s.chart.name == "vcluster")
    with pytest.raises(RenderError, match="additional properties 'syncer' not allowed"):
        render_chart(spec.chart.package, {"syncer": {}}, name="x", namespace="dmz")


def test_a_pin_without_a_vendored_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"cilium-9\.9\.9\.tgz is not vendored"):
        render_chart(tmp_path / "cilium-9.9.9.tgz", {}, name="cilium", namespace="kube-system")


# --- Pod Security ----------------------------------------------------------------------------


def with_mgmt(cfg: StackConfig, **update: Any) -> StackConfig:
    """The config with MGMT's fields replaced, past the preflight (what the render would do)."""
    mgmt = cfg.vclusters.mgmt.model_copy(update=update)
    return cfg.model_copy(update={"vclusters": cfg.vclusters.model_copy(update={"mgmt": mgmt})})


def test_restricted_is_refused_for_the_real_statefulset_with_its_init_containers() -> None:
    # The seed incident: a root vCluster pod in a namespace that enforces `restricted`.
    cfg = cfg_of("primary")
    strict = with_mgmt(
        cfg,
        rootless=False,
        pod_security=cfg.vclusters.mgmt.pod_security.model_copy(update={"enforce": "restricted"}),
    )
    problems = checks.pod_security_problems(strict, checks.render_releases(strict))
    assert [p.path for p in problems] == ["sovereign:vclusters.mgmt.podSecurity.enforce"]
    message = problems[0].allowed
    assert message.startswith("release mgmt-vcluster (slot 58) StatefulSet/mgmt-vcluster: ")
    assert 'violates PodSecurity "restricted:latest"' in message
    # The init containers the chart renders are judged too, in PodSecurity's order.
    assert (
        'containers "vcluster-copy", "kube-controller-manager", "kube-apiserver", "syncer" '
        "must set securityContext.allowPrivilegeEscalation=false" not in message
    )
    assert 'containers "vcluster-copy", "kube-controller-manager", "kube-apiserver"' in message
    assert 'runAsUser=0 (container "syncer" must not set runAsUser=0)' in message
    assert "sovereign:vclusters.mgmt.rootless is false: the pod runs as root" in message


def test_rootless_vcluster_pods_pass_restricted_as_rendered() -> None:
    # The default: every rendered vCluster pod (the StatefulSet with its init containers, and
    # the CoreDNS pod the syncer creates from the chart's manifest) passes `restricted`.
    for stack in ("primary", "secondary"):
        cfg = cfg_of(stack)
        rendered = checks.render_releases(cfg)
        judged = 0
        for release in rendered:
            if release.spec.vcluster is None:
                continue
            assert cfg.vclusters.spec(release.spec.vcluster).pod_security.enforce == "restricted"
            pods = [*pod_templates(release.objects), *coredns_pods(release.objects)]
            assert [p.owner.kind for p in pods] == ["StatefulSet", "ConfigMap"]
            for pod in pods:
                assert pss_evaluate(pod.spec, "restricted") == [], (
                    release.spec.name,
                    pod.owner.ref,
                )
                judged += 1
            syncer = pods[0].spec["containers"][0]["securityContext"]
            assert syncer["readOnlyRootFilesystem"] is True
            for init in pods[0].spec["initContainers"]:
                assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
                assert init["securityContext"]["readOnlyRootFilesystem"] is True
            # The syncer hands its UID to the CoreDNS pod.
            coredns = pods[1].spec["containers"][0]["securityContext"]
            assert coredns["runAsUser"] == syncer["runAsUser"] == 12345
        assert judged == 4
        assert checks.pod_security_problems(cfg, rendered) == []


def test_the_coredns_pod_the_syncer_creates_is_judged_too() -> None:
    # Without `policies.podSecurityStandard` the chart gives CoreDNS no seccomp profile, and a
    # `restricted` namespace refuses the pod the syncer creates: DNS in the vCluster never starts.
    cfg = cfg_of("primary")
    release = next(r for r in releases(cfg) if r.vcluster == "mgmt")
    values = {**release.values, "policies": {}}
    objects = render_chart(release.chart.package, values, name=release.name, namespace="mgmt")
    (pod,) = coredns_pods(objects)
    assert [v.check for v in pss_evaluate(pod.spec, "restricted")] == ["seccompProfile"]
    problems = checks.pod_security_problems(
        cfg, [checks.RenderedRelease(replace(release, values=values), objects)]
    )
    assert len(problems) == 1
    assert problems[0].allowed.startswith(
        "release mgmt-vcluster (slot 58) ConfigMap/vc-coredns-mgmt-vcluster: "
    )


# --- images ----------------------------------------------------------------------------------


def test_each_release_pulls_exactly_these_images(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    listed = {r.spec.name: images(r.objects) for r in rendered["primary"]}
    assert listed["cert-manager"] == [
        "quay.io/jetstack/cert-manager-cainjector:v1.21.1",
        "quay.io/jetstack/cert-manager-controller:v1.21.1",
        "quay.io/jetstack/cert-manager-startupapicheck:v1.21.1",
        "quay.io/jetstack/cert-manager-webhook:v1.21.1",
    ]
    assert listed["dmz-vcluster"] == [
        "ghcr.io/loft-sh/vcluster-oss:0.20.0",
        "registry.k8s.io/kube-apiserver:v1.30.14",
        "registry.k8s.io/kube-controller-manager:v1.30.14",
    ]
    assert [i.split("@")[0] for i in listed["cilium"]] == [
        "quay.io/cilium/cilium-envoy:v1.36.9-1782267392-edeb3f2af56c37c407efa1f63f0b32f595399bbc",
        "quay.io/cilium/cilium:v1.19.6",
        "quay.io/cilium/operator-generic:v1.19.6",
    ]
    assert all("@sha256:" in i for i in listed["cilium"])
    # The controller image kustomize retags in the release asset, from docker.io.
    assert listed["system-upgrade-controller"] == ["rancher/system-upgrade-controller:v0.20.1"]


def test_by_default_every_image_comes_from_a_public_upstream_registry(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    for stack in ("primary", "secondary"):
        assert checks.registries(rendered[stack]) == [
            "docker.io",
            "ghcr.io",
            "quay.io",
            "registry.k8s.io",
        ]
        for release in rendered[stack]:
            assert not any("harbor" in i for i in images(release.objects)), release.spec.name


def test_default_mirror_projects_cover_every_registry_the_charts_pull_from(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    for stack in ("primary", "secondary"):
        assert set(checks.registries(rendered[stack])) <= set(DEFAULT_MIRROR_PROJECTS)


def test_the_syncer_image_default_is_the_oss_build_with_its_source() -> None:
    facts = yaml.safe_load(
        (Path(checks.__file__).parent.parent / "render" / "vcluster_image.yaml").read_text()
    )
    image = Image()
    assert f"{image.registry}/{image.repository}:{image.tag}" == facts["default"]
    assert all(fact["source"] for fact in facts["facts"])


@pytest.mark.parametrize(
    ("image", "registry", "pinned"),
    [
        ("quay.io/cilium/cilium:v1.18.12@sha256:" + "a" * 64, "quay.io", True),
        ("registry.k8s.io/kube-apiserver:v1.30.14", "registry.k8s.io", True),
        ("coredns/coredns:1.11.3", "docker.io", True),
        ("nginx", "docker.io", False),
        ("nginx:latest", "docker.io", False),
        ("localhost:5000/app", "localhost:5000", False),
        ("ghcr.io/loft-sh/vcluster-oss@sha256:" + "b" * 64, "ghcr.io", True),
    ],
)
def test_image_references_parse_like_containerd(image: str, registry: str, pinned: bool) -> None:
    assert registry_of(image) == registry
    assert is_pinned(image) is pinned


def test_an_unpinned_rendered_image_is_refused(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    release = by_name(rendered["primary"], "dmz-vcluster")
    sts = obj(release, "StatefulSet", "dmz-vcluster")
    doc: Any = yaml.safe_load(yaml.safe_dump(dict(sts.doc)))
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/loft-sh/vcluster-oss"
    bad = checks.RenderedRelease(release.spec, (RenderedObject(sts.template, doc, "dmz"),))
    problems = checks.image_problems(cfg_of("primary"), [bad])
    assert [(p.path, p.value) for p in problems] == [
        (
            "release dmz-vcluster (slot 54) StatefulSet/dmz-vcluster "
            "spec.template.spec.containers[0].image",
            "'ghcr.io/loft-sh/vcluster-oss'",
        )
    ]


def test_the_mirror_refuses_at_preview_a_registry_without_a_project() -> None:
    raw = stack_config("primary")
    raw["registryMirror"] = {
        "enabled": True,
        "projects": {"docker.io": "proxy-dockerhub", "ghcr.io": "proxy-ghcr"},
    }
    with pytest.raises(SovereignConfigError) as caught:
        parse(raw, "primary")
    paths = [(p.path, p.value) for p in caught.value.problems]
    assert paths == [
        ("sovereign:registryMirror.projects", "'quay.io'"),
        ("sovereign:registryMirror.projects", "'registry.k8s.io'"),
    ]
    # Cilium's three and cert-manager's five (the ACME solver included).
    assert "no proxy project for quay.io, which 8 image(s) come from" in str(caught.value)


def test_with_the_mirror_on_every_image_is_pulled_through_it() -> None:
    run = evaluate("primary", {"registryMirror": {"enabled": True}})
    assert run.error is None, run.error
    cloud = yaml.safe_load(run.of_type(SERVER)[0].inputs["userData"])
    files = {f["path"]: f["content"] for f in cloud["write_files"]}
    mirrors = yaml.safe_load(files["/etc/rancher/k3s/registries.yaml"])["mirrors"]
    pulled = checks.registries(checks.render_releases(cfg_of("primary")))
    assert set(pulled) <= set(mirrors)
    assert mirrors["quay.io"] == {
        "endpoint": ["https://harbor.openova.io"],
        "rewrite": {"^(.*)$": "proxy-quay/$1"},
    }


MIRROR_PASSWORD = "mirror-pass-0123456789"


def test_mirror_credentials_are_written_into_registries_yaml_and_stay_secret() -> None:
    run = evaluate(
        "primary",
        {
            "registryMirror": {"enabled": True, "username": "robot$sovereign"},
            "registryMirrorPassword": SecretValue(MIRROR_PASSWORD),
        },
    )
    assert run.error is None, run.error
    server = run.of_type(SERVER)[0]
    assert "userData" in server.secret_inputs
    cloud = yaml.safe_load(server.inputs["userData"])
    files = {f["path"]: f["content"] for f in cloud["write_files"]}
    registries = yaml.safe_load(files["/etc/rancher/k3s/registries.yaml"])
    assert registries["configs"] == {
        "harbor.openova.io": {"auth": {"username": "robot$sovereign", "password": MIRROR_PASSWORD}}
    }
    for reg in run.registrations:
        for path in _paths_holding(reg.inputs, MIRROR_PASSWORD):
            assert any(path == s or path.startswith(f"{s}.") for s in reg.secret_inputs), (
                reg.name,
                path,
            )
    assert MIRROR_PASSWORD not in str(run.outputs)


def test_a_mirror_password_in_plain_config_is_refused_without_echoing_it() -> None:
    run = evaluate(
        "primary",
        {
            "registryMirror": {"enabled": True, "username": "robot"},
            "registryMirrorPassword": MIRROR_PASSWORD,
        },
    )
    # A plain (not --secret) value is not a model key: refused, named, never shown.
    assert isinstance(run.error, SovereignConfigError)
    assert MIRROR_PASSWORD not in str(run.error)
    assert run.registrations == []


def test_a_mirror_username_needs_the_secret_password() -> None:
    run = evaluate("primary", {"registryMirror": {"enabled": True, "username": "robot"}})
    assert isinstance(run.error, SovereignConfigError)
    assert "sovereign:registryMirrorPassword = (not set): required with" in str(run.error)


def _paths_holding(value: Any, needle: str, path: str = "") -> list[str]:
    if isinstance(value, str):
        return [path] if needle in value else []
    if isinstance(value, dict):
        return [
            p
            for k, v in value.items()
            for p in _paths_holding(v, needle, f"{path}.{k}" if path else k)
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _paths_holding(v, needle, f"{path}[{i}]")]
    return []


# --- telemetry -------------------------------------------------------------------------------


def test_vcluster_telemetry_is_off_unless_switched_on() -> None:
    for telemetry, expected in ((None, False), (True, True)):
        overrides = {} if telemetry is None else {"vclusters": {"dmz": {"telemetry": telemetry}}}
        raw = stack_config("primary")
        if overrides:
            raw["vclusters"]["dmz"]["telemetry"] = telemetry
        spec = next(s for s in releases(parse(raw, "primary")) if s.name == "dmz-vcluster")
        assert spec.values["telemetry"] == {"enabled": expected}
        objects = render_chart(spec.chart.package, spec.values, name=spec.name, namespace="dmz")
        secret = next(o for o in objects if o.kind == "Secret")
        import base64

        config = yaml.safe_load(base64.b64decode(secret.doc["data"]["config.yaml"]))
        assert config["telemetry"]["enabled"] is expected


# --- scheduling and wiring ---------------------------------------------------------------------


def test_the_vcluster_statefulset_selects_the_label_k3s_puts_on_the_nodes(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    cfg = cfg_of("secondary")
    sts = obj(by_name(rendered["secondary"], "rtz-vcluster"), "StatefulSet", "rtz-vcluster")
    selector = sts.doc["spec"]["template"]["spec"]["nodeSelector"]
    assert selector == {"openova.io/region": "omantel-hel1-2"}
    assert checks.node_labels(cfg)["openova.io/region"] == frozenset({"omantel-hel1-2"})


def test_a_nodeselector_no_node_carries_is_refused(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    release = by_name(rendered["primary"], "dmz-vcluster")
    sts = obj(release, "StatefulSet", "dmz-vcluster")
    doc: Any = yaml.safe_load(yaml.safe_dump(dict(sts.doc)))
    doc["spec"]["template"]["spec"]["nodeSelector"] = {"openova.io/region": "fsn1"}
    bad = checks.RenderedRelease(release.spec, (RenderedObject(sts.template, doc, "dmz"),))
    problems = checks.scheduling_problems(cfg_of("primary"), [bad])
    assert [(p.path, p.value) for p in problems] == [
        (
            "release dmz-vcluster (slot 54) StatefulSet/dmz-vcluster "
            "spec.template.spec.nodeSelector",
            "openova.io/region=fsn1",
        )
    ]


@pytest.mark.parametrize(
    ("stack", "host", "port"),
    [("primary", "10.0.1.2", "6443"), ("secondary", "10.0.1.253", "6443")],
)
def test_the_cilium_agent_reaches_the_api_from_every_node_kind(
    stack: str, host: str, port: str, rendered: dict[str, list[checks.RenderedRelease]]
) -> None:
    # The secondary runs servers and agents (its worker pool); read what the DaemonSet's pods
    # really get and check it against where k3s serves the API on each kind of node.
    agent = obj(by_name(rendered[stack], "cilium"), "DaemonSet", "cilium")
    container = next(
        c
        for c in agent.doc["spec"]["template"]["spec"]["containers"]
        if c["name"] == "cilium-agent"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (host, port)
    cfg = cfg_of(stack)
    for kind in cloudinit.node_kinds(cfg):
        assert (host, int(port)) in cloudinit.reachable_api(cfg, kind)
    assert cloudinit.node_kinds(cfg_of("secondary")) == ("server", "agent")
    assert checks.cilium_wiring_problems(cfg, rendered[stack]) == []


def _cilium_at(cfg: Any, host: str, port: int) -> checks.RenderedRelease:
    """The Cilium release of `cfg` as Helm renders it with k8sServiceHost/Port overridden."""
    spec = next(r for r in releases(cfg) if r.name == "cilium")
    values = {**spec.values, "k8sServiceHost": host, "k8sServicePort": port}
    objects = render_chart(spec.chart.package, values, name=spec.name, namespace=spec.namespace)
    return checks.RenderedRelease(spec, objects)


@pytest.mark.parametrize(
    ("host", "port", "kind"),
    [
        # The loopback apiserver exists only on servers: Cilium on the workers would not start.
        ("127.0.0.1", 6443, "agent"),
        # k3s's client load balancer exists only on agents (servers disable it).
        ("127.0.0.1", 6444, "server"),
        ("10.0.1.9", 6443, "server"),
    ],
)
def test_a_cilium_daemonset_some_node_kind_cannot_reach_the_api_from_is_refused(
    host: str, port: int, kind: str
) -> None:
    cfg = cfg_of("secondary")
    problems = checks.cilium_wiring_problems(cfg, [_cilium_at(cfg, host, port)])
    agent = [p for p in problems if "DaemonSet/cilium spec" in p.path and "[0]" in p.path]
    assert agent
    assert agent[0].value == f"KUBERNETES_SERVICE_HOST={host!r} KUBERNETES_SERVICE_PORT='{port}'"
    assert any(f"a k3s {kind} serves" in p.allowed for p in agent)


def test_cert_manager_renders_what_its_wait_depends_on(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    release = by_name(rendered["primary"], "cert-manager")
    job = obj(release, "Job", "cert-manager-startupapicheck")
    assert job.doc["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert obj(release, "Deployment", "cert-manager-webhook").namespace == "cert-manager"
    without = checks.RenderedRelease(
        release.spec, tuple(o for o in release.objects if o.kind != "Job")
    )
    problems = checks.cert_manager_wait_problems([without])
    assert [p.value for p in problems] == ["Job/cert-manager-startupapicheck missing"]


# --- schemas -----------------------------------------------------------------------------------


def test_rendered_objects_are_counted_by_kind(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    assert kinds(by_name(rendered["primary"], "dmz-vcluster").objects) == {
        "ConfigMap": 1,
        "Role": 1,
        "RoleBinding": 1,
        "Secret": 1,
        "Service": 2,
        "ServiceAccount": 2,
        "StatefulSet": 1,
    }


def test_a_declared_object_breaking_the_strict_schema_is_refused(primary: Run) -> None:
    declared = declared_objects(primary)
    label, namespace = next((w, d) for w, d in declared if d["kind"] == "Namespace")
    broken = {**namespace, "metadata": {**namespace["metadata"], "label": {"x": "y"}}}
    problems = checks.schema_problems(cfg_of("primary"), [], [(label, broken)])
    assert [p.path for p in problems] == [f"{label} metadata"]
    assert "'label' was unexpected" in problems[0].allowed
    assert "(Kubernetes v1.35.6+k3s1 schema, strict)" in problems[0].allowed


def test_a_rendered_container_field_typo_is_refused(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    cfg = cfg_of(
        "primary",
        {
            "vclusters": {
                **stack_config("primary")["vclusters"],
                "dmz": {"security": {"containerSecurityContext": {"runAsUsr": 1000}}},
            }
        },
    )
    problems = checks.schema_problems(cfg, checks.render_releases(cfg))
    assert [p.path for p in problems] == [
        "release dmz-vcluster (slot 54) StatefulSet/dmz-vcluster "
        "spec.template.spec.containers[0].securityContext"
    ]
    assert "'runAsUsr' was unexpected" in problems[0].allowed


def test_custom_resources_validate_against_the_crds_the_charts_install(
    rendered: dict[str, list[checks.RenderedRelease]],
) -> None:
    crds = checks.crd_schemas(rendered["primary"])
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt"},
        "spec": {"selfSigned": {}},
    }
    assert checks.object_errors(issuer, "v1.31.4", crds) == []
    bad = {**issuer, "spec": {"selfSigned": "yes"}}
    assert checks.object_errors(bad, "v1.31.4", crds) == [
        ("spec.selfSigned", "'yes' is not of type 'object'")
    ]


def test_the_metadata_deny_policy_is_checked_on_the_fields_it_uses(primary: Run) -> None:
    _, ccnp = next((w, d) for w, d in declared_objects(primary) if d["kind"].startswith("Cilium"))
    assert checks.ccnp_errors(ccnp) == []
    broken = {
        **ccnp,
        "spec": {
            "endpointSelector": {},
            "nodeSelector": {},
            "egressDeny": [{"toCIDR": ["169.254.169.254/33"]}],
            "enableDefaultDeny": {"egress": "no"},
            "egresDeny": [],
        },
    }
    assert checks.ccnp_errors(broken) == [
        ("spec.egresDeny", "unknown field of a Cilium policy rule"),
        ("spec", "exactly one of endpointSelector and nodeSelector"),
        ("spec.enableDefaultDeny.egress", "egress/ingress: a boolean"),
        ("spec.egressDeny[0].toCIDR[0]", "'169.254.169.254/33': a CIDR"),
    ]


def test_an_unknown_custom_resource_is_not_waved_through() -> None:
    errors = checks.object_errors(
        {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}, "v1.31.4", {}
    )
    assert errors == [("apiVersion", "example.com/v1 Thing: no schema to validate it against")]


def test_the_upgrade_plan_and_the_gateway_are_checked_on_their_crds_fields() -> None:
    from checks.rendered import gateway_errors, object_errors, plan_errors

    run = evaluate(
        "primary",
        {"loadBalancer": {"enabled": True}, "cilium": {"gatewayApi": {"enabled": True}}},
    )
    assert run.error is None, run.error
    plan = run.one("kubernetes:upgrade.cattle.io/v1:Plan").inputs
    gateway = run.one("kubernetes:gateway.networking.k8s.io/v1:Gateway").inputs
    assert plan_errors(plan) == []
    assert gateway_errors(gateway) == []
    # Both are recognised, not waved through as unknown kinds.
    assert object_errors(plan, "v1.33.13+k3s2", {}) == []
    broken_plan = {**plan, "spec": {**plan["spec"], "upgrade": {}, "concurency": 1}}
    assert plan_errors(broken_plan) == [
        ("spec.concurency", "unknown field"),
        ("spec.upgrade.image", "required"),
    ]
    listener = {**gateway["spec"]["listeners"][0], "port": 70000, "tls": {"mode": "Reencrypt"}}
    broken_gateway = {**gateway, "spec": {"gatewayClassName": "cilium", "listeners": [listener]}}
    assert gateway_errors(broken_gateway) == [
        ("spec.listeners[0].port", "70000: 1 to 65535"),
        ("spec.listeners[0].tls.mode", "'Reencrypt': Terminate or Passthrough"),
    ]
    unknown = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    assert object_errors(unknown, "v1.33.13+k3s2", {}) == [
        ("apiVersion", "example.com/v1 Thing: no schema to validate it against")
    ]


def test_declared_custom_resources_are_validated_against_the_crds_that_will_be_installed() -> None:
    from tools.mockrun import stack_config
    from tools.plan import declared_objects

    overrides = {"loadBalancer": {"enabled": True}, "cilium": {"gatewayApi": {"enabled": True}}}
    run = evaluate("primary", overrides)
    assert run.error is None, run.error
    cfg = parse({**stack_config("primary"), **overrides}, "primary")
    rendered = checks.render_releases(cfg)
    # The CRDs come from what the stack applies: Gateway API v1.4.0 (Cilium 1.19's) and the
    # system-upgrade-controller's Plan CRD, beside the Cilium policy schema.
    crds = checks.crd_schemas(rendered)
    assert {("gateway.networking.k8s.io/v1", "Gateway"), ("upgrade.cattle.io/v1", "Plan")} <= set(
        crds
    )
    assert [(r.spec.name, r.spec.chart.version) for r in rendered if r.spec.slot == 1] == [
        ("gateway-api-crds", "v1.4.0"),
        ("cilium", "1.19.6"),
    ]
    declared = dict(declared_objects(run))
    assert checks.schema_problems(cfg, rendered, declared.items()) == []

    def broken(kind: str, change: dict[str, Any]) -> dict[str, Any]:
        where, doc = next((w, d) for w, d in declared.items() if d["kind"] == kind)
        return {where: {**doc, "spec": {**doc["spec"], **change}}}

    gateway = next(d for d in declared.values() if d["kind"] == "Gateway")
    listener = {**gateway["spec"]["listeners"][0], "allowedRoutes": {"namespaces": {"from": "Any"}}}
    # Each of these only the CRD's schema refuses: the structural checks do not model them.
    wrong = {
        **broken("Gateway", {"listeners": [listener]}),
        **broken("Plan", {"cordon": "yes"}),
        **broken("CiliumClusterwideNetworkPolicy", {"egressDeny": [{"toCIDR": "10.0.0.0/8"}]}),
    }
    problems = checks.schema_problems(cfg, rendered, wrong.items())
    assert sorted((p.path, p.allowed.split(" (")[0]) for p in problems) == [
        (
            "resource slot-01-cilium-deny-metadata spec.egressDeny.0.toCIDR",
            "'10.0.0.0/8' is not of type 'array'",
        ),
        (
            "resource slot-01-cilium-ingress-gateway spec.listeners.0.allowedRoutes.namespaces.from",
            "'Any' is not one of ['All', 'Selector', 'Same']",
        ),
        (
            "resource slot-03-system-upgrade-server-plan spec.cordon",
            "'yes' is not of type 'boolean'",
        ),
    ]
    # The structural check still catches what the schema lets through (unknown fields).
    typo = broken("Plan", {"concurency": 1})
    assert [p.path for p in checks.schema_problems(cfg, rendered, typo.items())] == [
        "resource slot-03-system-upgrade-server-plan spec.concurency"
    ]


def test_a_policy_the_allow_deny_evaluator_cannot_read_is_a_problem() -> None:
    doc = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "egress", "namespace": "dmz"},
        "spec": {"endpointSelector": {}, "egress": [{"toEndpoints": [{"k8s:app": "dns"}]}]},
    }
    problems = checks.policy_problems([("resource slot-54-dmz-egress", doc)])
    assert [p.path for p in problems] == ["resource slot-54-dmz-egress"]
    assert "selector keys ['k8s:app']: not a label selector" in problems[0].allowed


def _crd_spec(path: Path, version: str) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    (served,) = (v for v in crd["spec"]["versions"] if v["name"] == version)
    return served["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("release", ["v1.3.0", "v1.4.0"])
def test_the_gateway_field_sets_are_the_vendored_crds_of_each_pinned_release(release: str) -> None:
    upstream = Path(__file__).resolve().parent.parent / "render" / "upstream"
    spec = _crd_spec(
        upstream / f"gateway-api-{release}/gateway.networking.k8s.io_gateways.yaml", "v1"
    )
    assert set(spec["properties"]) == checks.GATEWAY_SPEC_FIELDS
    assert set(spec["properties"]["listeners"]["items"]["properties"]) == checks.LISTENER_FIELDS


def test_the_plan_field_sets_are_the_vendored_plan_crd() -> None:
    from render.system_upgrade import release

    spec = _crd_spec(release().crd_file, "v1")
    assert set(spec["properties"]) == checks.PLAN_SPEC_FIELDS
    assert set(spec["properties"]["upgrade"]["properties"]) == checks.PLAN_UPGRADE_FIELDS
