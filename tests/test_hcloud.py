"""Issue 19 §2: the Hetzner cloud controller manager (slot 04), its k3s flags and its token."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from checks.preflight import parse
from checks.rendered import RenderedRelease, render_releases
from config.models import StackConfig
from render import cloudinit
from render.hcloud import CCM_RELEASE, HCLOUD_SECRET, NETWORK_KEY, TOKEN_KEY
from render.helm import RenderedObject
from render.manifests import pod_templates
from render.metadata_fence import CCM_UID
from render.naming import CLOUD_CONTROLLER_LABEL_KEY, NODE_ROLE_LABEL_KEY
from tools.mockrun import (
    DELETE,
    FAKE_CLUSTER_TOKEN,
    Run,
    SecretValue,
    evaluate,
    stack_config,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
SERVER = "hcloud:index/server:Server"
TOKEN = "T" * cloudinit.K3S_TOKEN_LENGTH
UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"


def cfg(stack: str, **overrides: Any) -> StackConfig:
    return parse({**stack_config(stack), **overrides}, stack)


# The committed secondary without its autoscaled pool, which needs the Hetzner CCM.
STATIC_POOLS = {"general": stack_config("secondary")["workers"]["general"]}


def k3s_config(user_data: str) -> dict[str, Any]:
    doc = yaml.safe_load(user_data)
    config = next(f for f in doc["write_files"] if f["path"] == cloudinit.K3S_CONFIG_PATH)
    return yaml.safe_load(config["content"])


# --- k3s hands node initialisation to the CCM, on servers and agents alike --------------------


@pytest.mark.parametrize("node", [0, 1, 2])
def test_every_server_runs_without_k3s_cloud_controller_and_with_an_external_kubelet(
    node: int,
) -> None:
    c = cfg("secondary")
    flags = k3s_config(cloudinit.render_user_data(c, node, "198.51.100.7", TOKEN))
    assert flags["disable-cloud-controller"] is True
    assert flags["kubelet-arg"] == ["cloud-provider=external"]


def test_every_agent_registers_with_an_external_cloud_provider() -> None:
    c = cfg("secondary")
    flags = k3s_config(cloudinit.render_agent_user_data(c, "general", TOKEN))
    assert flags["kubelet-arg"] == ["cloud-provider=external"]
    # An agent runs no controllers: the server flag would make k3s agent refuse to start.
    assert "disable-cloud-controller" not in flags


def test_the_builtin_controller_keeps_the_boot_of_a_region_deployed_before_the_ccm() -> None:
    c = cfg("secondary", cloudController="k3s", workers=STATIC_POOLS)
    server = k3s_config(cloudinit.render_user_data(c, 0, "198.51.100.7", TOKEN))
    agent = k3s_config(cloudinit.render_agent_user_data(c, "general", TOKEN))
    for flags in (server, agent):
        assert "kubelet-arg" not in flags
        assert "disable-cloud-controller" not in flags


def test_worst_case_user_data_with_the_flags_stays_under_the_cap() -> None:
    c = cfg("secondary")
    for node in range(3):
        text = cloudinit.render_user_data(
            c, node, "198.51.100.7", TOKEN, cloudinit.worst_case_boot(c, node)
        )
        assert "cloud-provider=external" in text
        assert len(text.encode()) <= cloudinit.USER_DATA_CAP


# --- slot 04 in the graph ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def secondary() -> Run:
    run = evaluate("secondary")
    assert run.error is None, run.error
    return run


def release(run: Run, name: str) -> Any:
    return next(r for r in run.of_type(RELEASE) if r.inputs["name"] == name)


def test_the_ccm_runs_after_cilium_and_before_everything_that_needs_initialised_nodes(
    secondary: Run,
) -> None:
    ccm = release(secondary, CCM_RELEASE)
    assert release(secondary, "cilium").urn in ccm.dependencies
    secret = next(r for r in secondary.of_type(SECRET) if r.inputs["metadata"]["name"] == "hcloud")
    assert secret.urn in ccm.dependencies
    # cert-manager waits for it; the vClusters through cert-manager.
    assert ccm.urn in release(secondary, "cert-manager").dependencies


def test_a_region_on_the_builtin_controller_installs_no_ccm() -> None:
    raw = {**stack_config("secondary"), "cloudController": "k3s", "workers": STATIC_POOLS}
    run = evaluate("secondary", raw=raw)
    assert run.error is None, run.error
    assert CCM_RELEASE not in {r.inputs["name"] for r in run.of_type(RELEASE)}
    # cert-manager then waits for Cilium alone (the table edge to 04 drops with the slot).
    assert release(run, "cilium").urn in release(run, "cert-manager").dependencies


def test_servers_and_workers_record_their_cloud_controller(secondary: Run) -> None:
    servers = secondary.of_type(SERVER)
    assert len(servers) == 5
    assert {s.inputs["labels"][CLOUD_CONTROLLER_LABEL_KEY] for s in servers} == {"hetzner"}


def live_servers(controller: str | None) -> list[dict[str, Any]]:
    labels: dict[str, str] = {
        "openova.io/k3s-version": "v1.35.6-k3s1",
        "openova.io/cilium-version": "1.19.6",
        "openova.io/k3s-boot": "init",
        "openova.io/vcluster-mgmt": "rootless",
        "openova.io/vcluster-dmz": "rootless",
        "openova.io/vcluster-rtz": "none",
        "openova.io/vcluster-mgmt-storage": "hcloud-volumes",
        "openova.io/vcluster-dmz-storage": "hcloud-volumes",
    }
    if controller is not None:
        labels[CLOUD_CONTROLLER_LABEL_KEY] = controller
    return [{"name": "omantel-fsn1-cp-1", "labels": labels, "deleteProtection": True}]


def test_a_live_region_booted_before_the_ccm_is_not_switched_silently() -> None:
    run = evaluate("primary", live_servers=live_servers(None))
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:cloudController = 'hetzner': omantel-fsn1-cp-1: these servers booted" in (
        message
    )
    assert "sovereign:cloudController: k3s" in message
    assert "Handing nodes to the Hetzner CCM" in message
    # Kept on k3s's controller, the same region goes ahead and its servers say so.
    kept = evaluate("primary", {"cloudController": "k3s"}, live_servers=live_servers(None))
    assert kept.error is None, kept.error
    server = kept.one(SERVER, "omantel-fsn1-1")
    assert server.inputs["labels"][CLOUD_CONTROLLER_LABEL_KEY] == "k3s"
    assert "userData" in server.ignore_changes
    # A region handed over (label set) goes ahead on the Hetzner CCM.
    assert evaluate("primary", live_servers=live_servers("hetzner")).error is None
    # And a region booted for the CCM cannot fall back to k3s's controller.
    back = evaluate("primary", {"cloudController": "k3s"}, live_servers=live_servers("hetzner"))
    assert "booted for the Hetzner CCM" in str(back.error)


# --- the token: required, secret, one copy ----------------------------------------------------


def test_the_token_is_required_with_the_command_that_sets_it() -> None:
    run = evaluate("primary", {"hcloudToken": DELETE})
    assert run.registrations == []
    message = str(run.error)
    assert "sovereign:hcloudToken = (not set): required" in message
    assert "pulumi config set --secret sovereign:hcloudToken <token>" in message


def test_the_offline_plan_parses_a_stack_file_without_the_token() -> None:
    # The offline plan reads no secrets: a committed stack file never holds the token in clear.
    assert cfg("primary").cloud_controller == "hetzner"


def test_the_token_reaches_only_the_secret_and_only_as_a_secret(secondary: Run) -> None:
    carriers = [r for r in secondary.registrations if FAKE_CLUSTER_TOKEN in json.dumps(r.inputs)]
    assert [(r.type, r.inputs["metadata"]["name"]) for r in carriers] == [(SECRET, HCLOUD_SECRET)]
    secret = carriers[0]
    assert secret.inputs["metadata"]["namespace"] == "kube-system"
    assert set(secret.inputs["stringData"]) == {TOKEN_KEY, NETWORK_KEY}
    assert secret.inputs["stringData"][TOKEN_KEY] == FAKE_CLUSTER_TOKEN
    assert "stringData" in secret.secret_inputs
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    # The network key is the region's Hetzner network, the one the servers attach to.
    attached = {
        str(int(net["networkId"]))
        for r in secondary.of_type(SERVER)
        for net in r.inputs.get("networks", [])
    }
    assert attached == {secret.inputs["stringData"][NETWORK_KEY]}


def test_a_plain_token_is_refused_unechoed() -> None:
    run = evaluate("primary", {"hcloudToken": "plain-token-" + "p" * 20})
    message = str(run.error)
    assert "sovereign:hcloudToken = [redacted]: " in message
    assert "plain-token-" not in message
    ok = evaluate("primary", {"hcloudToken": SecretValue("s" * 64)})
    assert ok.error is None, ok.error


# --- the rendered controller ------------------------------------------------------------------


def ccm_objects(stack: str) -> tuple[RenderedObject, ...]:
    rendered: list[RenderedRelease] = render_releases(cfg(stack))
    return next(r for r in rendered if r.spec.name == CCM_RELEASE).objects


def ccm_pod(stack: str) -> dict[str, Any]:
    deployment = next(o for o in ccm_objects(stack) if o.kind == "Deployment")
    return dict(deployment.doc["spec"]["template"]["spec"])


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_the_rendered_ccm_reads_token_and_network_from_the_secret(stack: str) -> None:
    variables = env(ccm_pod(stack))
    ref = {"secretKeyRef": {"name": HCLOUD_SECRET, "key": TOKEN_KEY}}
    assert variables["HCLOUD_TOKEN"] == ref
    assert variables["HCLOUD_NETWORK"] == {
        "secretKeyRef": {"name": HCLOUD_SECRET, "key": NETWORK_KEY}
    }


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_load_balancer_services_get_lbs_in_the_regions_location_and_network(stack: str) -> None:
    c = cfg(stack)
    pod = ccm_pod(stack)
    variables = env(pod)
    assert variables["HCLOUD_LOAD_BALANCERS_LOCATION"] == c.region.location
    assert variables["HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP"] == "true"
    # Cilium tunnels: no Hetzner routes.
    assert variables["HCLOUD_NETWORK_ROUTES_ENABLED"] == "false"
    assert f"--cluster-cidr={c.pod_cidr}" in pod["containers"][0]["args"]


def test_the_ccm_is_the_host_network_pod_the_metadata_fence_admits() -> None:
    pod = ccm_pod("primary")
    assert pod["hostNetwork"] is True
    assert pod["securityContext"]["runAsUser"] == CCM_UID
    assert "runAsUser" not in pod["containers"][0].get("securityContext", {})
    assert pod["nodeSelector"] == {NODE_ROLE_LABEL_KEY: "control-plane"}


def test_what_schedules_before_the_ccm_tolerates_uninitialised_nodes() -> None:
    # With cloud-provider=external every node is tainted until the CCM initialised it: Cilium
    # (which makes the nodes Ready) and the CCM itself must tolerate that, or nothing starts.
    rendered = render_releases(cfg("secondary"))
    checked = 0
    for r in rendered:
        if r.spec.name not in ("cilium", CCM_RELEASE):
            continue
        for pod in pod_templates(r.objects):
            tolerations = pod.spec.get("tolerations") or []
            assert any(
                (t.get("operator") == "Exists" and "key" not in t)
                or (t.get("key") == UNINITIALIZED and t.get("effect") in (None, "NoSchedule"))
                for t in tolerations
            ), (r.spec.name, pod.owner.ref)
            checked += 1
    assert checked >= 3  # Cilium's agent and operator, the CCM


def test_every_ccm_image_goes_through_the_mirror_and_is_listed_until_pinned() -> None:
    from checks.rendered import mirror_problems
    from render.manifests import image_uses, registry_of
    from render.pins import unpinned_images

    mirrored = cfg("primary", registryMirror={"enabled": True})
    rendered = render_releases(mirrored)
    ccm = next(r for r in rendered if r.spec.name == CCM_RELEASE)
    images = sorted({use.image for use in image_uses(ccm.objects)})
    assert images == ["docker.io/hetznercloud/hcloud-cloud-controller-manager:v1.35.0"]
    assert {registry_of(i) for i in images} <= set(mirrored.registry_mirror.projects)
    assert mirror_problems(mirrored, [ccm]) == []
    # Without a digest the plan warns about it by name (render/pins.py).
    assert unpinned_images({"hcloud-ccm": images}) == [
        f"image {images[0]} (hcloud-ccm) is not pinned by digest: a tag can be moved to other "
        f"bytes; fill render/image_digests.yaml: `python -m tools.resolve_pins image {images[0]}`"
    ]
