"""The Hetzner cloud controller manager (slot 04), the CSI driver (slot 05) and the Secret both
read: Helm values and names (pure).

Facts from the vendored chart (render/charts/hcloud-cloud-controller-manager-1.35.0.tgz,
`values.yaml` and `templates/deployment.yaml` at tag v1.35.0, read 2026-12-04) and from the
controller's configuration (hetznercloud/hcloud-cloud-controller-manager
`internal/config/config.go` and `docs/reference/load_balancer_envs.md`, read 2026-12-04):

- The chart reads Secret `hcloud` in its release namespace: `token` as HCLOUD_TOKEN and, with
  `networking.enabled`, `network` as HCLOUD_NETWORK (an ID or a name).
- `networking.enabled` also puts the pod on the host network (it reads the metadata service's
  `/private-networks` at start to check its node is attached, which the host fence admits for
  CCM_UID only: render/metadata_fence.py) and passes `--allocate-node-cidrs=true
  --cluster-cidr=<networking.clusterCIDR>`, which must be the cluster's pod CIDR.
- With HCLOUD_NETWORK set the route controller is on unless HCLOUD_NETWORK_ROUTES_ENABLED is
  false; Cilium tunnels pod traffic here (no `routingMode: native`), so no Hetzner route is
  needed and none is made.
- HCLOUD_LOAD_BALANCERS_LOCATION: where a LoadBalancer Service's Hetzner LB is created (the
  region's location; mutually exclusive with ..._NETWORK_ZONE).
  HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP: the LB reaches its targets through the region's network
  (default false: public IPs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from config.models import StackConfig
from render.charts import Chart
from render.metadata_fence import CCM_UID
from render.naming import NODE_ROLE_LABEL_KEY, hetzner_labels
from render.pins import pinned_tag

HCLOUD_NAMESPACE: Final = "kube-system"
# The Secret and keys both Hetzner charts read by default (CCM values.yaml `env.HCLOUD_TOKEN`,
# `networking.network`; CSI values.yaml `controller.hcloudToken.existingSecret`), and the
# autoscaler reads too: one copy of the token in the cluster.
HCLOUD_SECRET: Final = "hcloud"
TOKEN_KEY: Final = "token"
NETWORK_KEY: Final = "network"

CCM_RELEASE: Final = "hcloud-ccm"
CCM_CHART: Final = Chart(name="hcloud-cloud-controller-manager", version="1.35.0")
# The chart names its objects after the chart unless nameOverride is set (_helpers.tpl).
CCM_NAME: Final = "hcloud-cloud-controller-manager"
# The controller's image as the chart names it (values.yaml `image.repository`, and `image.tag`
# "v{{ $.Chart.Version }}", which templates/deployment.yaml passes through `tpl`): given in full
# so that the tag can carry its digest from render/image_digests.yaml.
CCM_IMAGE: Final = "docker.io/hetznercloud/hcloud-cloud-controller-manager"
# What the controller asks the scheduler for: the chart's own default (values.yaml `resources`).
CCM_REQUESTS: Final = {"requests": {"cpu": "100m", "memory": "50Mi"}}


def hcloud_secret_data(token: str, network_id: str) -> dict[str, str]:
    """`stringData` of Secret kube-system/hcloud (the token only ever inside a secret Output)."""
    return {TOKEN_KEY: token, NETWORK_KEY: network_id}


def ccm_values(cfg: StackConfig) -> dict[str, Any]:
    """Helm values of the hcloud-cloud-controller-manager chart (slot 04)."""
    replicas = 1 if cfg.control_plane.count == 1 else 2
    return {
        "image": {
            "repository": CCM_IMAGE,
            "tag": pinned_tag(f"{CCM_IMAGE}:v{CCM_CHART.version}"),
        },
        "networking": {"enabled": True, "clusterCIDR": cfg.pod_cidr},
        "replicaCount": replicas,
        "env": {
            "HCLOUD_LOAD_BALANCERS_LOCATION": {"value": cfg.region.location},
            "HCLOUD_LOAD_BALANCERS_USE_PRIVATE_IP": {"value": "true"},
            "HCLOUD_NETWORK_ROUTES_ENABLED": {"value": "false"},
        },
        # The host fence lets exactly this uid reach the metadata service (its only reader
        # among the pods on the host network); the chart's own default is 65532.
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": CCM_UID,
            "runAsGroup": CCM_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # On the servers: the controller must not depend on a worker pool that may be scaled to
        # zero, and a server is the node it can always run on.
        "nodeSelector": {NODE_ROLE_LABEL_KEY: "control-plane"},
        "resources": CCM_REQUESTS,
    }


# --- slot 05: the Hetzner CSI driver ----------------------------------------------------------

CSI_RELEASE: Final = "hcloud-csi"
CSI_CHART: Final = Chart(name="hcloud-csi", version="2.22.1")
# The StorageClass the chart creates (values.yaml `storageClasses[0].name`), what
# `vclusters.<name>.storageClass: hcloud-volumes` names. k3s's own `local-path` stays the
# cluster's default class; this one is chosen explicitly.
HCLOUD_VOLUMES: Final = "hcloud-volumes"
# A Hetzner Cloud volume is 10 GB at least and a node takes at most 16: hetznercloud/csi-driver
# driver constants `MinVolumeSize = 10 // GB`, `MaxVolumesPerNode = 16` (a stored copy of an
# older release, 1.6.0; not re-read at v2.22.1; read 2026-12-04). A volume lives in one location
# and attaches only to a server there (the StorageClass's topology is the location label).
HCLOUD_VOLUME_MIN_GI: Final = 10
# Requests per container (the chart leaves every `resources` empty; render/system_pods.py).
CSI_REQUEST: Final = {"requests": {"cpu": "10m", "memory": "32Mi"}}
# Every image of the chart as its values.yaml names it (`<part>.image.<container>.name/.tag`,
# hcloud-csi 2.22.1; the driver's tag is "v{{ .Chart.Version }}", rendered through `tpl` by
# templates/_common_images.tpl): given in full so each tag carries its digest from
# render/image_digests.yaml where the data has one.
CSI_IMAGES: Final[Mapping[str, Mapping[str, tuple[str, str]]]] = {
    "controller": {
        "csiAttacher": ("registry.k8s.io/sig-storage/csi-attacher", "v4.11.0"),
        "csiResizer": ("registry.k8s.io/sig-storage/csi-resizer", "v2.1.0"),
        "csiProvisioner": ("registry.k8s.io/sig-storage/csi-provisioner", "v6.2.0"),
        "livenessProbe": ("registry.k8s.io/sig-storage/livenessprobe", "v2.18.0"),
        "hcloudCSIDriver": ("docker.io/hetznercloud/hcloud-csi-driver", f"v{CSI_CHART.version}"),
    },
    "node": {
        "csiNodeDriverRegistrar": (
            "registry.k8s.io/sig-storage/csi-node-driver-registrar",
            "v2.16.0",
        ),
        "livenessProbe": ("registry.k8s.io/sig-storage/livenessprobe", "v2.18.0"),
        "hcloudCSIDriver": ("docker.io/hetznercloud/hcloud-csi-driver", f"v{CSI_CHART.version}"),
    },
}


def csi_images(part: str) -> dict[str, dict[str, str]]:
    return {
        container: {"name": name, "tag": pinned_tag(f"{name}:{tag}")}
        for container, (name, tag) in CSI_IMAGES[part].items()
    }


CSI_CONTROLLER_CONTAINERS: Final = (
    "csiAttacher",
    "csiResizer",
    "csiProvisioner",
    "livenessProbe",
    "hcloudCSIDriver",
)
CSI_NODE_CONTAINERS: Final = ("csiNodeDriverRegistrar", "livenessProbe", "hcloudCSIDriver")


def csi_values(cfg: StackConfig) -> dict[str, Any]:
    """Helm values of the hcloud-csi chart (slot 05), valid against its values schema."""
    return {
        "controller": {
            "image": csi_images("controller"),
            # The one Secret (the chart's default names it too; said here so a chart bump that
            # renamed it fails the render check instead of starting a controller without token).
            "hcloudToken": {"existingSecret": {"name": HCLOUD_SECRET, "key": TOKEN_KEY}},
            # New volumes in the region's location, read from config rather than from the
            # metadata service (the controller's fallback).
            "hcloudVolumeDefaultLocation": cfg.region.location,
            # Every volume carries the region's Hetzner labels: a destroy leaves volumes in the
            # project (nothing asks the cluster to delete them), and these labels find them.
            "volumeExtraLabels": hetzner_labels(cfg),
            "resources": dict.fromkeys(CSI_CONTROLLER_CONTAINERS, CSI_REQUEST),
        },
        # The node plugin keeps the chart's tolerations (every NoSchedule and NoExecute taint):
        # a vCluster a pool's taint admits always finds the plugin where it lands.
        "node": {
            "image": csi_images("node"),
            "resources": dict.fromkeys(CSI_NODE_CONTAINERS, CSI_REQUEST),
        },
        "storageClasses": [
            {
                "name": HCLOUD_VOLUMES,
                # k3s's local-path is the default class; two defaults make a PVC without a class
                # ambiguous.
                "defaultStorageClass": False,
                # A deleted claim keeps its volume (and its data): deleting a vCluster's data is
                # a decision made in the Hetzner console, not a side effect of a release change.
                "reclaimPolicy": "Retain",
            }
        ],
    }
