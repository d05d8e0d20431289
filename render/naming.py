"""Physical names and labels: derived from the Sovereign and region, so regions never collide."""

from __future__ import annotations

from typing import Final

from config.models import StackConfig

# The node label every region-pinned workload selects on. k3s sets it on the node
# (`--node-label`) and the vCluster charts select it; both read `region_label` below, because
# upstream once selected on the bare region key and every vCluster pod stayed Pending.
REGION_LABEL_KEY: Final = "openova.io/region"
NODE_ROLE_LABEL_KEY: Final = "catalyst.openova.io/role"
# "true" on what serves the Kubernetes API to the whole internet on purpose (the policy pack
# refuses a world-open 6443 without it).
API_PUBLIC_LABEL_KEY: Final = "openova.io/api-public"
# Which worker pool a node (and its Hetzner server) belongs to: the ingress load balancer's
# label selector and Cilium's Gateway node selector both read it.
POOL_LABEL_KEY: Final = "openova.io/pool"
WORKER_ROLE: Final = "worker"
# Who initialised the node (sovereign:cloudController) on every server, read back at preview:
# a node's providerID is set once, so a region booted with k3s's built-in controller cannot be
# handed to the Hetzner CCM by a config change (checks/hcloud.py refuses that).
CLOUD_CONTROLLER_LABEL_KEY: Final = "openova.io/cloud-controller"


def prefix(cfg: StackConfig) -> str:
    """`<sovereign>-<region key>`: unique per region inside one Hetzner project."""
    return f"{cfg.name}-{cfg.region.key}"


def region_label(cfg: StackConfig) -> str:
    """The canonical value of `openova.io/region`, the same on nodes and in every nodeSelector."""
    return prefix(cfg)


TEST_RUN_LABEL_KEY: Final = "openova.io/test-run"


def hetzner_labels(cfg: StackConfig, **extra: str) -> dict[str, str]:
    """Labels on every Hetzner resource: which Sovereign, region and role it belongs to."""
    return {
        "openova.io/sovereign": cfg.name,
        REGION_LABEL_KEY: region_label(cfg),
        "openova.io/region-role": cfg.region.role,
        "managed-by": "pulumi",
        # A throwaway region (./sovereign e2e): its sweep finds leftovers by this label.
        **({TEST_RUN_LABEL_KEY: cfg.test_run} if cfg.test_run is not None else {}),
        **extra,
    }


def worker_node_labels(cfg: StackConfig, pool: str) -> dict[str, str]:
    """The Kubernetes labels every node of worker pool `pool` registers with (k3s node-label)."""
    return {
        **cfg.workers[pool].labels,
        REGION_LABEL_KEY: region_label(cfg),
        NODE_ROLE_LABEL_KEY: WORKER_ROLE,
        POOL_LABEL_KEY: pool,
    }


def worker_server_labels(cfg: StackConfig, pool: str) -> dict[str, str]:
    """The Hetzner labels of a worker server: what the ingress LB's label selector matches."""
    return hetzner_labels(cfg, **{NODE_ROLE_LABEL_KEY: WORKER_ROLE, POOL_LABEL_KEY: pool})


def pool_selector(cfg: StackConfig, pool: str) -> str:
    """Hetzner label selector of one pool's servers in this region."""
    return f"{REGION_LABEL_KEY}={region_label(cfg)},{POOL_LABEL_KEY}={pool}"


def deployer_key_name(cfg: StackConfig) -> str:
    """The region's Hetzner SSH key (the deployer's); the autoscaler's servers get it too."""
    return f"{prefix(cfg)}-deployer"


def pool_placement_group(cfg: StackConfig, pool: str) -> str:
    """The name of a pool's own spread placement group (the autoscaler finds it by name)."""
    return f"{prefix(cfg)}-{pool}"


def worker_name(cfg: StackConfig, pool: str, index: int) -> str:
    """`<sovereign>-<region>-<pool>-<n>`: the Hetzner server and the Kubernetes node name."""
    return f"{prefix(cfg)}-{pool}-{index + 1}"


def api_public_label(cfg: StackConfig) -> str:
    """`openova.io/api-public` on the API load balancer and the firewall: "true" only when the
    stack says `sovereign:api.public: true` (the policy pack keys off it)."""
    return "true" if cfg.api.public else "false"
