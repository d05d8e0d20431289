"""Slot 06: cluster-autoscaler with its Hetzner provider, for the pools that opt in (pure).

A pool with `autoscaling: {min, max}` is one node group of the provider. Its servers boot the
same agent cloud-init as a static pool's (`render.cloudinit.render_agent_user_data`, built once
per pool), handed to the provider in HCLOUD_CLUSTER_CONFIG_FILE's JSON: a file mounted from a
Secret of its own, because that cloud-init holds the k3s join token. The Hetzner token is the
one copy in Secret kube-system/hcloud (`token`), read through a secretKeyRef. What the provider
reads and how is data: render/cluster_autoscaler.yaml.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

from config.models import StackConfig
from config.server_types import CATALOGUE as SERVER_TYPES
from config.support import minor
from render.charts import Chart
from render.cloudinit import render_agent_user_data
from render.hcloud import HCLOUD_NAMESPACE, HCLOUD_SECRET, TOKEN_KEY
from render.naming import (
    NODE_ROLE_LABEL_KEY,
    deployer_key_name,
    pool_placement_group,
    pool_selector,
    prefix,
    worker_node_labels,
)
from render.pins import pinned_tag

DATA_FILE: Final = Path(__file__).with_name("cluster_autoscaler.yaml")
# Where the Secret `hcloud` is: a secretKeyRef reads only its own namespace.
NAMESPACE: Final = HCLOUD_NAMESPACE
RELEASE: Final = "cluster-autoscaler"
# The Secret holding the provider's cluster config (each autoscaled pool's cloud-init, with the
# join token), mounted read-only as a file.
CONFIG_SECRET: Final = "cluster-autoscaler-hetzner"
CONFIG_KEY: Final = "cluster-config.json"
CONFIG_DIR: Final = "/etc/sovereign/cluster-autoscaler"
CONFIG_VOLUME: Final = "hetzner-cluster-config"
# Hetzner server names are host names: one DNS label of at most 63 characters.
SERVER_NAME_MAX: Final = 63


@dataclass(frozen=True, slots=True)
class ProviderFacts:
    chart: Chart
    app_version: str
    kubernetes_minor: str
    image: str
    env: Mapping[str, str]
    arch_keys: Mapping[str, str]
    node_group_label: str
    server_name_suffix: int
    provider_id_prefix: str
    max_placement_group_size: int
    node_group_name: re.Pattern[str]
    requests: Mapping[str, str]
    run_as_user: int


@functools.cache
def facts() -> ProviderFacts:
    data = cast(dict[str, Any], yaml.safe_load(DATA_FILE.read_text()))
    chart, app, provider = data["chart"], data["app"], data["provider"]
    return ProviderFacts(
        chart=Chart(name=str(chart["name"]), version=str(chart["version"])),
        app_version=str(app["version"]),
        kubernetes_minor=str(app["kubernetesMinor"]),
        image=str(app["image"]),
        env={str(k): str(v) for k, v in provider["env"].items()},
        arch_keys={str(k): str(v) for k, v in provider["archKeys"].items()},
        node_group_label=str(provider["nodeGroupLabel"]),
        server_name_suffix=int(provider["serverNameSuffix"]),
        provider_id_prefix=str(provider["providerIdPrefix"]),
        max_placement_group_size=int(provider["maxPlacementGroupSize"]),
        node_group_name=re.compile(str(provider["nodeGroupName"])),
        requests={str(k): str(v) for k, v in data["requests"].items()},
        run_as_user=int(data["runAsUser"]),
    )


def autoscaled_pools(cfg: StackConfig) -> list[str]:
    """The pools cluster-autoscaler sizes, by name."""
    return sorted(pool for pool, spec in cfg.workers.items() if spec.autoscaling is not None)


def enabled(cfg: StackConfig) -> bool:
    """Slot 06 runs where some pool opts in."""
    return bool(autoscaled_pools(cfg))


def node_group(cfg: StackConfig, pool: str) -> str:
    """`<sovereign>-<region>-<pool>`: the provider lists a group's servers by label across the
    whole Hetzner project, so the name must not repeat in another region."""
    return f"{prefix(cfg)}-{pool}"


def node_group_selector(cfg: StackConfig, pool: str) -> str:
    """The Hetzner label selector of an autoscaled pool's servers (the provider's own label)."""
    return f"{facts().node_group_label}={node_group(cfg, pool)}"


def pool_server_selector(cfg: StackConfig, pool: str) -> str:
    """The Hetzner label selector of a pool's servers (the ingress load balancer's target).

    cluster-autoscaler 1.35 sets no label of ours on the servers it creates (a per-pool
    `serverLabels` arrives in 1.36), only its own node-group label, which is unique per region.
    """
    if cfg.workers[pool].autoscaling is not None:
        return node_group_selector(cfg, pool)
    return pool_selector(cfg, pool)


def autoscaling_groups(cfg: StackConfig) -> list[dict[str, Any]]:
    """The chart's `autoscalingGroups`: one `--nodes=min:max:type:location:name` per pool."""
    groups: list[dict[str, Any]] = []
    for pool in autoscaled_pools(cfg):
        spec = cfg.workers[pool]
        bounds = spec.autoscaling
        if bounds is None:  # pragma: no cover - autoscaled_pools lists only these
            continue
        groups.append(
            {
                "name": node_group(cfg, pool),
                "minSize": bounds.min,
                "maxSize": bounds.max,
                "instanceType": spec.server_type,
                "region": cfg.region.location,
            }
        )
    return groups


def node_group_flags(cfg: StackConfig) -> list[str]:
    """The `--nodes` arguments the chart renders from `autoscaling_groups` (for messages)."""
    return [
        f"--nodes={g['minSize']}:{g['maxSize']}:{g['instanceType']}:{g['region']}:{g['name']}"
        for g in autoscaling_groups(cfg)
    ]


def cluster_config(cfg: StackConfig, cloud_init: Mapping[str, str]) -> dict[str, Any]:
    """HCLOUD_CLUSTER_CONFIG_FILE's JSON; `cloud_init` is each autoscaled pool's agent boot.

    Labels and taints are the ones the agent registers with (its k3s config): the autoscaler
    predicts a new node from them, so a Pending pod that selects the pool scales it up.
    """
    nodes: dict[str, Any] = {}
    for pool in autoscaled_pools(cfg):
        spec = cfg.workers[pool]
        arch = SERVER_TYPES.types[spec.server_type].arch
        node: dict[str, Any] = {
            "cloudInit": cloud_init[pool],
            "labels": worker_node_labels(cfg, pool),
            "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in spec.taints],
            "imagesForArch": {
                facts().arch_keys[arch]: spec.image or cfg.control_plane.image,
            },
            # The workers' subnet: the provider attaches each server there before starting it.
            "subnetIPRange": cfg.network.worker_subnet_cidr,
        }
        if spec.placement_group:
            node["placementGroup"] = pool_placement_group(cfg, pool)
        nodes[node_group(cfg, pool)] = node
    return {"nodeConfigs": nodes}


def cluster_config_json(cfg: StackConfig, cloud_init: Mapping[str, str]) -> str:
    return json.dumps(cluster_config(cfg, cloud_init), sort_keys=True)


# The pod annotation that restarts the autoscaler when a pool's boot changes.
BOOT_ANNOTATION: Final = "openova.io/boot-sha256"


def boot_digest(cfg: StackConfig) -> str:
    """sha256 of the cluster config with the secrets as placeholders (pure, not secret).

    The provider reads its cluster config once, at start: without a restart, a boot that
    changed (a new k3sVersion, operators' keys, a pool's labels) would reach new servers only
    after the pod happened to restart. The secrets are stable values (a rotated mirror password
    alone does not change this; restart the Deployment then).
    """
    placeholder = {
        pool: render_agent_user_data(cfg, pool, "<k3s token>", "<mirror password>")
        for pool in autoscaled_pools(cfg)
    }
    return hashlib.sha256(cluster_config_json(cfg, placeholder).encode()).hexdigest()


def autoscaler_values(cfg: StackConfig) -> dict[str, Any]:
    """Helm values of the cluster-autoscaler chart (slot 06)."""
    f = facts()
    env = f.env
    return {
        "podAnnotations": {BOOT_ANNOTATION: boot_digest(cfg)},
        # The chart's default prefixes the release name to `<release>-hetzner-cluster-autoscaler`.
        "fullnameOverride": RELEASE,
        # The chart's own image, named in full so the tag carries its digest when the data has
        # one (render/image_digests.yaml), as every other image of the region.
        "image": {
            "repository": f.image.rpartition(":")[0],
            "tag": pinned_tag(f.image),
        },
        "cloudProvider": "hetzner",
        "autoscalingGroups": autoscaling_groups(cfg),
        "extraArgs": {
            # `min` is a floor the autoscaler keeps, not only one it will not scale below:
            # without this flag a pool set to min 2 starts (and stays) empty until pods wait.
            "enforce-node-group-min-size": True,
        },
        "extraEnv": {
            env["clusterConfigFile"]: f"{CONFIG_DIR}/{CONFIG_KEY}",
            # The network by name (components/network.py names it after the region).
            env["network"]: prefix(cfg),
            env["sshKey"]: deployer_key_name(cfg),
            # As the program's own workers: IPv4 for egress (k3s download, images), no IPv6.
            env["publicIpv4"]: "true",
            env["publicIpv6"]: "false",
        },
        "extraEnvSecrets": {
            # The one copy of the cluster's Hetzner token (sovereign:hcloudToken), by reference.
            env["token"]: {"name": HCLOUD_SECRET, "key": TOKEN_KEY},
        },
        "extraVolumeSecrets": {
            CONFIG_VOLUME: {
                "name": CONFIG_SECRET,
                "mountPath": CONFIG_DIR,
                "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
            }
        },
        # On the servers: an autoscaler on a pool it scales could remove its own node, and a
        # pool may be scaled to zero.
        "nodeSelector": {NODE_ROLE_LABEL_KEY: "control-plane"},
        "resources": {"requests": dict(f.requests)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": f.run_as_user,
            "runAsGroup": f.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def kubernetes_minor_matches(cfg: StackConfig) -> bool:
    return minor(cfg.control_plane.k3s_version) == facts().kubernetes_minor
