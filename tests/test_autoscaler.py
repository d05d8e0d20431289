"""Opt-in autoscaling: cluster-autoscaler's Hetzner provider sizes the pools that set it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import rendered as checks
from checks.preflight import parse
from checks.workers import autoscaling_warnings
from config.errors import SovereignConfigError
from render import autoscaler
from render.cloudinit import K3S_TOKEN_LENGTH, USER_DATA_CAP, render_agent_user_data
from render.manifests import image_uses, is_pinned, pod_templates
from tests.helpers import assert_cloud_init_schema
from tools.mockrun import FAKE_K3S_TOKEN, Registration, Run, evaluate, stack_config
from tools.plan import build_plan
from tools.plan_json import dumps

SECRET = "kubernetes:core/v1:Secret"
RELEASE = "kubernetes:helm.sh/v3:Release"
SERVER = "hcloud:index/server:Server"
GROUP = "hcloud:index/placementGroup:PlacementGroup"
ATTACHMENT = "hcloud:index/firewallAttachment:FirewallAttachment"
NODE_GROUP = "omantel-hel1-2-burst"


def config_secret(run: Run) -> Registration:
    return run.one(SECRET, "slot-06-cluster-autoscaler-hetzner-config")


def cluster_config(run: Run) -> dict[str, Any]:
    return json.loads(config_secret(run).inputs["stringData"][autoscaler.CONFIG_KEY])


def autoscaler_release(cfg: Any) -> checks.RenderedRelease:
    return next(r for r in checks.render_releases(cfg) if r.spec.name == autoscaler.RELEASE)


def container(release: checks.RenderedRelease) -> dict[str, Any]:
    (pod,) = pod_templates(release.objects)
    (only,) = pod.spec["containers"]
    return only


def test_an_autoscaled_pool_boots_the_same_agent_cloud_init_kept_secret(secondary: Run) -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    node = cluster_config(secondary)["nodeConfigs"][NODE_GROUP]
    # The pool's agent boot from the one renderer, with the real join token: only a Secret.
    assert node["cloudInit"] == render_agent_user_data(cfg, "burst", FAKE_K3S_TOKEN)
    assert FAKE_K3S_TOKEN in node["cloudInit"]
    assert "stringData" in config_secret(secondary).secret_inputs
    # A static pool's servers boot the same renderer's output for their own pool.
    general = secondary.one(SERVER, "omantel-hel1-2-pool-general-1")
    assert general.inputs["userData"] == render_agent_user_data(cfg, "general", FAKE_K3S_TOKEN)
    # The release mounts the Secret, so it waits for it.
    release = secondary.one(RELEASE, "slot-06-cluster-autoscaler-release")
    assert config_secret(secondary).urn in release.dependencies
    # And for the Hetzner token's one Secret, which it reads at start.
    hcloud = [s for s in secondary.of_type(SECRET) if s.inputs["metadata"]["name"] == "hcloud"]
    (token,) = hcloud
    assert token.urn in release.dependencies
    # No server of the autoscaled pool is the program's.
    assert not [s for s in secondary.of_type(SERVER) if "burst" in s.name]


def test_the_autoscaler_cloud_init_passes_the_schema_and_fits_the_cap(
    tmp_path: Path, secondary: Run
) -> None:
    text = cluster_config(secondary)["nodeConfigs"][NODE_GROUP]["cloudInit"]
    assert_cloud_init_schema(text, tmp_path / "autoscaled.yaml")
    cfg = parse(stack_config("secondary"), "secondary")
    worst = render_agent_user_data(cfg, "burst", "x" * K3S_TOKEN_LENGTH, "x" * 128)
    assert len(worst.encode()) <= USER_DATA_CAP


def test_an_autoscaled_pool_over_the_cap_is_refused_at_preview() -> None:
    key = "ssh-rsa " + "A" * 1900 + " op"
    raw = stack_config("secondary")
    raw["access"] = {**raw["access"], "sshPublicKeys": [key] * 18}
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, "secondary")
    assert "sovereign:workers.burst (user_data) = " in str(err.value)
    assert f"at most {USER_DATA_CAP} bytes (Hetzner's user_data cap)" in str(err.value)


def test_node_groups_and_the_provider_settings_are_rendered_from_config(secondary: Run) -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    release = autoscaler_release(cfg)
    main = container(release)
    assert "--nodes=0:3:cpx32:hel1:omantel-hel1-2-burst" in main["command"]
    assert "--enforce-node-group-min-size=true" in main["command"]
    env = {e["name"]: e for e in main["env"]}
    # The token: the one copy in Secret kube-system/hcloud, by reference.
    assert env["HCLOUD_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hcloud", "key": "token"}}
    assert "value" not in env["HCLOUD_TOKEN"]
    network = secondary.one("hcloud:index/network:Network")
    assert env["HCLOUD_NETWORK"]["value"] == network.inputs["name"]
    ssh_key = secondary.one("hcloud:index/sshKey:SshKey")
    assert env["HCLOUD_SSH_KEY"]["value"] == ssh_key.inputs["name"]
    assert (env["HCLOUD_PUBLIC_IPV4"]["value"], env["HCLOUD_PUBLIC_IPV6"]["value"]) == (
        "true",
        "false",
    )
    # HCLOUD_FIREWALL stays unset: the label-selected firewall covers the provider's servers.
    assert "HCLOUD_FIREWALL" not in env
    attachment = secondary.one(ATTACHMENT)
    assert f"hcloud/node-group={NODE_GROUP}" in attachment.inputs["labelSelectors"]
    # The cluster config is a file from the Secret, where the env says it is.
    (mount,) = main["volumeMounts"]
    (pod,) = pod_templates(release.objects)
    (volume,) = pod.spec["volumes"]
    assert volume["secret"]["secretName"] == autoscaler.CONFIG_SECRET
    assert volume["name"] == mount["name"]
    (item,) = volume["secret"]["items"]
    assert env["HCLOUD_CLUSTER_CONFIG_FILE"]["value"] == f"{mount['mountPath']}/{item['path']}"
    assert item["key"] in config_secret(secondary).inputs["stringData"]
    # The node group's placement group, subnet, labels and image are the program's own.
    node = cluster_config(secondary)["nodeConfigs"][NODE_GROUP]
    group = secondary.one(GROUP, "omantel-hel1-2-pool-burst-spread")
    assert node["placementGroup"] == group.inputs["name"]
    subnet = secondary.one(
        "hcloud:index/networkSubnet:NetworkSubnet", "omantel-hel1-2-workers-subnet"
    )
    assert node["subnetIPRange"] == subnet.inputs["ipRange"]
    assert node["labels"]["openova.io/pool"] == "burst"
    assert node["labels"]["workload"] == "burst"
    assert node["imagesForArch"] == {"amd64": "ubuntu-24.04"}
    # The autoscaler waits for what its provider looks up by name at start.
    waits = secondary.one(RELEASE, "slot-06-cluster-autoscaler-release").dependencies
    assert {group.urn, subnet.urn, attachment.urn} <= set(waits)


def test_a_changed_boot_restarts_the_autoscaler_and_bounds_do_not() -> None:
    raw = stack_config("secondary")
    before = autoscaler.autoscaler_values(parse(raw, "secondary"))
    keys = [*raw["access"]["sshPublicKeys"], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB op@x"]
    rekeyed = {**raw, "access": {**raw["access"], "sshPublicKeys": keys}}
    after = autoscaler.autoscaler_values(parse(rekeyed, "secondary"))
    annotation = autoscaler.BOOT_ANNOTATION
    assert before["podAnnotations"][annotation] != after["podAnnotations"][annotation]
    wider = {**raw, "workers": {**raw["workers"], "burst": {**raw["workers"]["burst"]}}}
    wider["workers"]["burst"]["autoscaling"] = {"min": 1, "max": 3}
    bounds = autoscaler.autoscaler_values(parse(wider, "secondary"))
    assert bounds["podAnnotations"] == before["podAnnotations"]
    (pod,) = pod_templates(autoscaler_release(parse(raw, "secondary")).objects)
    assert pod.owner.doc["spec"]["template"]["metadata"]["annotations"] == before["podAnnotations"]


def test_an_arm_pool_names_its_image_for_arm64_and_taints_reach_the_provider() -> None:
    raw = {
        **stack_config("secondary"),
        "workers": {
            "arm": {
                "serverType": "cax21",
                "autoscaling": {"min": 1, "max": 2},
                "placementGroup": False,
                "taints": [{"key": "dedicated", "value": "dmz", "effect": "NoSchedule"}],
            }
        },
    }
    raw["vclusters"] = {
        **raw["vclusters"],
        "dmz": {**raw["vclusters"]["dmz"], "tolerations": [{"key": "dedicated", "value": "dmz"}]},
    }
    cfg = parse(raw, "secondary")
    node = autoscaler.cluster_config(cfg, {"arm": "#cloud-config\n"})["nodeConfigs"][
        "omantel-hel1-2-arm"
    ]
    assert node["imagesForArch"] == {"arm64": "ubuntu-24.04"}
    assert node["taints"] == [{"key": "dedicated", "value": "dmz", "effect": "NoSchedule"}]
    assert "placementGroup" not in node


def test_the_rendered_autoscaler_is_valid_for_the_pinned_minor_and_its_image_is_covered() -> None:
    raw = {**stack_config("secondary"), "registryMirror": {"enabled": True}}
    cfg = parse(raw, "secondary")
    release = autoscaler_release(cfg)
    assert {o.kind for o in release.objects} >= {"Deployment", "ClusterRole", "ServiceAccount"}
    assert checks.schema_problems(cfg, [release]) == []
    assert checks.request_problems([release]) == []
    assert checks.scheduling_problems(cfg, [release]) == []
    images = [use.image for use in image_uses(release.objects)]
    assert images == ["registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.0"]
    assert all(is_pinned(image) for image in images)
    # The mirror rewrite covers its registry; without a project for it the preview refuses.
    assert checks.mirror_problems(cfg, [release]) == []
    projects = {k: v for k, v in cfg.registry_mirror.projects.items() if k != "registry.k8s.io"}
    # (The preflight refuses this stack; the check itself is what is shown here.)
    bare = cfg.model_copy(
        update={"registry_mirror": cfg.registry_mirror.model_copy(update={"projects": projects})}
    )
    (problem,) = checks.mirror_problems(bare, [release])
    assert problem.value == "'registry.k8s.io'"
    assert "cluster-autoscaler" in problem.allowed


def test_the_autoscaler_image_carries_its_digest_from_the_one_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from render import pins

    image = "registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.0"
    digest = "sha256:" + "ab" * 32
    data = tmp_path / "image_digests.yaml"
    entry = {"digest": digest, "source": f"https://registry.test/{image}", "checked": "2026-12-04"}
    data.write_text(yaml.safe_dump({"images": {image: entry}}))
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", data)
    cfg = parse(stack_config("secondary"), "secondary")
    assert container(autoscaler_release(cfg))["image"] == f"{image}@{digest}"


def test_the_autoscaler_pod_stays_under_the_metadata_deny(secondary: Run) -> None:
    from checks.network_policy import KINDS, allowed, entity, load, pod
    from render.metadata_fence import CCM_UID
    from tools.plan import declared_objects

    cfg = parse(stack_config("secondary"), "secondary")
    (template,) = pod_templates(autoscaler_release(cfg).objects)
    # A pod-network pod (Cilium's policies apply), not the uid the hosts' fence admits.
    assert not template.spec.get("hostNetwork")
    assert template.spec["securityContext"]["runAsUser"] != CCM_UID
    labels = template.owner.doc["spec"]["template"]["metadata"]["labels"]
    me = pod("cluster-autoscaler", autoscaler.NAMESPACE, **labels)
    docs = [doc for _, doc in declared_objects(secondary)]
    docs += [dict(o.doc) for r in checks.render_releases(cfg) for o in r.objects]
    policies = load([d for d in docs if d.get("kind") in KINDS])
    assert policies
    assert not allowed(policies, me, entity("metadata", "169.254.169.254"), 80)
    # What it needs: the Hetzner API on the internet (and the Kubernetes API).
    assert allowed(policies, me, entity("world", "203.0.113.50"), 443)
    assert allowed(policies, me, entity("kube-apiserver"), 6443)


def test_the_plan_shows_the_autoscaler_and_hides_its_boot(secondary: Run) -> None:
    cfg = parse(stack_config("secondary"), "secondary")
    plan = build_plan(cfg, secondary)
    text = dumps(plan)
    assert FAKE_K3S_TOKEN not in text
    (pool,) = [p for p in plan["workers"] if p["pool"] == "burst"]
    assert pool["count"] == 0
    assert pool["autoscaling"] == {
        "min": 0,
        "max": 3,
        "nodeGroup": NODE_GROUP,
        "by": "cluster-autoscaler (slot 06)",
    }
    (release,) = [r for r in plan["releases"] if r["name"] == "cluster-autoscaler"]
    assert release["slot"] == 6
    secret = next(r for r in plan["resources"] if r["name"].endswith("-hetzner-config"))
    assert secret["inputs"]["stringData"] == "[secret]"
    # Its image has no digest yet: the plan warns (and --strict refuses).
    assert any("cluster-autoscaler:v1.35.0" in w for w in plan["unpinned"])
    assert any("pool burst is autoscaled" in line for line in secondary.logs)


def test_the_primary_runs_no_autoscaler(primary: Run) -> None:
    assert not [r for r in primary.registrations if "autoscaler" in r.name]
    assert primary.one(ATTACHMENT).inputs["labelSelectors"] == ["openova.io/region=omantel-fsn1"]


def _snapshot(run: Run) -> dict[str, tuple[Any, ...]]:
    return {
        r.urn: (r.inputs, sorted(r.dependencies), r.ignore_changes, sorted(r.secret_inputs))
        for r in run.registrations
    }


def _changed(before: Run, after: Run) -> set[str]:
    old, new = _snapshot(before), _snapshot(after)
    changed = {u for u in old.keys() & new.keys() if old[u] != new[u]}
    return {u.rsplit("::", 1)[1] for u in changed | (old.keys() ^ new.keys())}


def _with(workers: dict[str, Any]) -> Run:
    run = evaluate("secondary", {"workers": workers})
    assert run.error is None, run.error
    return run


BASE = stack_config("secondary")["workers"]


def test_pool_changes_touch_only_that_pool(secondary: Run) -> None:
    # A bound of the autoscaled pool: only the autoscaler's flags move.
    wider = _with({**BASE, "burst": {**BASE["burst"], "autoscaling": {"min": 1, "max": 5}}})
    assert _changed(secondary, wider) == {"slot-06-cluster-autoscaler-release"}
    # The static pool grows: the autoscaler and the autoscaled pool are untouched.
    grown = _with({**BASE, "general": {**BASE["general"], "count": 3}})
    assert _changed(secondary, grown) == {
        "omantel-hel1-2-pool-general-3",
        "omantel-hel1-2-pool-general-3-net",
    }


def test_a_second_autoscaled_pool_touches_no_other_pool_and_no_server(secondary: Run) -> None:
    spot = {"serverType": "cpx22", "autoscaling": {"min": 0, "max": 2}}
    added = _with({**BASE, "spot": spot})
    changed = _changed(secondary, added)
    # Its own group and component; the shared autoscaler objects and firewall selectors update
    # in place; no server, no other pool's object.
    assert changed == {
        "omantel-hel1-2-pool-spot",
        "omantel-hel1-2-pool-spot-spread",
        "omantel-hel1-2-fw-servers",
        "slot-06-cluster-autoscaler-hetzner-config",
        "slot-06-cluster-autoscaler-release",
    }
    assert "hcloud/node-group=omantel-hel1-2-spot" in added.one(ATTACHMENT).inputs["labelSelectors"]


def test_a_static_pool_turned_autoscaled_says_which_servers_go_undrained() -> None:
    from checks.workers import removal_warnings

    cfg = parse(
        {
            **stack_config("secondary"),
            "workers": {
                **BASE,
                "general": {"serverType": "cpx32", "autoscaling": {"min": 1, "max": 4}},
            },
        },
        "secondary",
    )
    live = {"omantel-hel1-2-general-1": "general", "omantel-hel1-2-general-2": "general"}
    warned = removal_warnings(cfg, live)
    assert [w.split(" ", 2)[1] for w in warned] == list(live)
    assert all("WITHOUT a drain" in w for w in warned)


def test_the_ingress_load_balancer_follows_an_autoscaled_pool_by_its_node_group() -> None:
    workers = {**BASE, "burst": {**BASE["burst"], "autoscaling": {"min": 1, "max": 3}}}
    cilium = stack_config("secondary").get("cilium", {})
    run = evaluate(
        "secondary",
        {
            "workers": workers,
            "loadBalancer": {"enabled": True, "pool": "burst"},
            "cilium": {**cilium, "gatewayApi": {"enabled": True}},
        },
    )
    assert run.error is None, run.error
    (target,) = [
        t
        for t in run.of_type("hcloud:index/loadBalancerTarget:LoadBalancerTarget")
        if t.name.endswith("-lb-target-burst")
    ]
    assert target.inputs["labelSelector"] == f"hcloud/node-group={NODE_GROUP}"


def refusal(workers: dict[str, Any], **more: Any) -> str:
    raw = {**stack_config("secondary"), "workers": workers, **more}
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, "secondary")
    return str(err.value)


def test_bad_autoscaling_is_refused_in_one_error() -> None:
    message = refusal(
        {
            "inverted": {"serverType": "cpx32", "autoscaling": {"min": 4, "max": 2}},
            "both": {"serverType": "cpx32", "count": 2, "autoscaling": {"min": 1, "max": 2}},
            "wide": {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 11}},
            "empty": {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 0}},
        }
    )
    assert "sovereign:workers.inverted.autoscaling.min = 4: at most autoscaling.max (2)" in message
    assert "sovereign:workers.both.count = 2: unset on an autoscaled pool" in message
    assert "sovereign:workers.empty.autoscaling.max = 0:" in message
    assert "Traceback" not in message
    # Well-formed each, wrong across keys: reported together by the preflight.
    message = refusal(
        {"wide": {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 11}}},
        loadBalancer={"pool": "wide"},
    )
    assert "(2 problem(s))" in message
    assert "sovereign:workers.wide.autoscaling.max = 11: at most 10 servers" in message
    assert "sovereign:loadBalancer.pool = 'wide': a pool that always has servers" in message
    # Eleven are fine without a placement group (the provider's limit is per group).
    raw = {**stack_config("secondary")}
    raw["workers"] = {
        "wide": {
            "serverType": "cpx32",
            "autoscaling": {"min": 0, "max": 11},
            "placementGroup": False,
        }
    }
    assert parse(raw, "secondary").workers["wide"].most_servers == 11


def test_autoscaling_needs_the_hetzner_cloud_controller() -> None:
    raw = {**stack_config("secondary"), "cloudController": "k3s"}
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, "secondary")
    message = str(err.value)
    assert "(1 problem(s))" in message
    assert "sovereign:cloudController = 'k3s': 'hetzner' while pools are autoscaled (burst)" in (
        message
    )
    raw["workers"] = {"general": raw["workers"]["general"]}
    assert parse(raw, "secondary").cloud_controller == "k3s"


def test_a_cluster_minor_the_autoscaler_is_not_built_for_is_warned_on_every_preview() -> None:
    # Warned, not refused: a region steps 1.33 -> 1.34 -> 1.35 one `up` at a time.
    raw = stack_config("secondary")
    control_plane = {**raw["controlPlane"], "k3sVersion": "v1.34.6+k3s1"}
    run = evaluate("secondary", {"controlPlane": control_plane})
    assert run.error is None, run.error
    (warning,) = [line for line in run.logs if "cluster-autoscaler 1.35.0" in line]
    assert warning.startswith("warning: stack secondary: sovereign:controlPlane.k3sVersion")
    assert "while pools burst are autoscaled" in warning
    assert "built for Kubernetes 1.35" in warning
    static = {
        **raw,
        "controlPlane": control_plane,
        "workers": {"general": raw["workers"]["general"]},
    }
    assert autoscaling_warnings(parse(static, "secondary")) == []


def test_autoscaled_pools_whose_boots_overflow_one_secret_are_refused() -> None:
    raw = stack_config("secondary")
    key = "ssh-rsa " + "A" * 1900 + " op"
    # About 21 KB of worst-case boot each (within Hetzner's cap): 50 fill more than 1 MiB.
    raw["access"] = {**raw["access"], "sshPublicKeys": [key] * 5}
    pools = {
        f"p{n}": {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 1}} for n in range(50)
    }
    raw["workers"] = pools
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, "secondary")
    message = str(err.value)
    assert "(1 problem(s))" in message
    assert "sovereign:workers (autoscaled pools' cloud-init) = " in message
    assert "at most 1048576 bytes in all (Kubernetes' Secret size limit" in message
    # Half as many fit.
    raw["workers"] = dict(list(pools.items())[:25])
    assert len(parse(raw, "secondary").workers) == 25


def test_the_longest_node_group_still_names_valid_servers() -> None:
    # The longest names the grammar allows: the provider names each server after its group
    # with up to 17 more characters, and a Hetzner server name is one DNS label.
    raw = {**stack_config("secondary"), "name": "o" * 20}
    raw["region"] = {**raw["region"], "key": "hel1-99"}
    raw["workers"] = {"p" * 16: {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 1}}}
    cfg = parse(raw, "secondary")
    group = autoscaler.node_group(cfg, "p" * 16)
    facts = autoscaler.facts()
    assert len(group) + facts.server_name_suffix <= autoscaler.SERVER_NAME_MAX
    assert facts.node_group_name.fullmatch(group)
