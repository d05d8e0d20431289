"""Slots 54/58/59 values: loft-sh vCluster 0.20.0, its namespace labels and NetworkPolicy (pure)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

import yaml

from config.models import StackConfig, VCluster, VClusterName
from render.charts import Chart
from render.hcloud import HCLOUD_VOLUME_MIN_GI, HCLOUD_VOLUMES
from render.helm import RenderedObject
from render.manifests import PodTemplate
from render.naming import REGION_LABEL_KEY, region_label
from render.pins import pinned, pinned_tag
from render.pod_security import SYNCER, helm_merge, pss_labels
from render.slots import active_vclusters

if TYPE_CHECKING:
    from pulumi_kubernetes.networking.v1 import (
        NetworkPolicyIngressRuleArgsDict,
        NetworkPolicyPeerArgsDict,
        NetworkPolicySpecArgsDict,
    )

CHART: Final = Chart(name="vcluster", version="0.20.0")
ROLE_LABEL: Final = "catalyst.openova.io/vcluster-role"
TOPOLOGY_LABEL: Final = "catalyst.openova.io/topology"
GATEWAY_NAMESPACE: Final = "gateway-system"

# Who may open connections into each vCluster's namespace; each zone's egress allows the same
# edges from its side (render/tenants.py), DMZ -> MGMT only on vclusters.dmzToMgmtPorts.
INGRESS_FROM: Final[Mapping[VClusterName, tuple[str, ...]]] = {
    "mgmt": ("dmz",),
    "dmz": ("mgmt", "rtz", "kube-system", GATEWAY_NAMESPACE),
    "rtz": ("dmz",),
}
# The DMZ is the only zone that serves the internet.
WORLD_INGRESS: Final = frozenset({"dmz"})


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


def namespace_name(vcluster: VClusterName) -> str:
    return vcluster


def release_name(vcluster: VClusterName) -> str:
    return f"{vcluster}-vcluster"


def _image_tag(spec: VCluster) -> str:
    """The syncer's tag with its digest: the stack's own pin, else render/image_digests.yaml.

    The chart composes `<registry>/<repository>:<tag>` and has no digest value (templates/
    _helper.tpl, `vcluster.image`), so the digest rides in the tag and the tag stays for people.
    """
    image = spec.image
    if image.digest:
        return f"{image.tag}@{image.digest}"
    return pinned_tag(f"{image.registry}/{image.repository}:{image.tag}")


# The virtual control plane's images as the chart names them by default (values.yaml
# controlPlane.distro.k8s.apiServer/controllerManager.image at v0.20.0, vendored in
# render/charts/vcluster-0.20.0.tgz, checked 2026-12-04). Given in full, tag included: the chart
# swaps in `distro.k8s.version` only while a tag is its default v1.30.2 (templates/
# _init-containers.tpl), and a tag carrying a digest is never that.
DISTRO_IMAGES: Final[Mapping[str, tuple[str, str]]] = {
    "apiServer": ("registry.k8s.io", "kube-apiserver"),
    "controllerManager": ("registry.k8s.io", "kube-controller-manager"),
}
# The CoreDNS image the syncer deploys inside a vCluster of Kubernetes 1.30: its version map has
# no 1.30 entry, so it falls back to DefaultImage (loft-sh/vcluster v0.20.0 pkg/constants/
# coredns.go CoreDNSVersionMap, pkg/coredns/coredns.go DefaultImage; commit 531ed2d, checked
# 2026-12-04). Named in the values (controlPlane.coredns.deployment.image, which the chart writes
# into the CoreDNS manifest as it is) so that it can carry a digest.
COREDNS_IMAGE: Final = "coredns/coredns:1.11.3"


def distro_images(version: str) -> dict[str, Any]:
    """apiServer and controllerManager `image` values at `version`, with digests where pinned."""
    return {
        part: {
            "image": {
                "registry": registry,
                "repository": repository,
                "tag": pinned_tag(f"{registry}/{repository}:{version}"),
            }
        }
        for part, (registry, repository) in DISTRO_IMAGES.items()
    }


KUBERNETES_DATA: Final = Path(__file__).with_name("vcluster_kubernetes.yaml")


@functools.cache
def kubernetes_version() -> str:
    """The virtual control plane's Kubernetes version (facts and sources in the data file)."""
    data = cast("dict[str, Any]", yaml.safe_load(KUBERNETES_DATA.read_text()))
    return str(data["version"])


# The UID and fsGroup of loft's rootless example (vcluster-docs deploy/security/rootless-mode,
# version-0.20.0); any non-zero UID works. The syncer hands its own UID to the CoreDNS pod it
# creates (pkg/coredns/coredns.go at v0.20.0), so one UID covers every pod of the vCluster.
ROOTLESS_UID: Final = 12345
# Every container of the pod (the syncer and the k8s distro's init containers, which only copy
# binaries into the `binaries` emptyDir): what `restricted` demands, plus a read-only root
# filesystem. The syncer writes only to its volumes (/data, /pki, /binaries, /tmp,
# /.cache/helm); the one write outside them, /root/.kube/config for old CLIs, is skipped on
# purpose when the root filesystem is read-only (pkg/util/kubeconfig/kubeconfig.go at v0.20.0).
ROOTLESS_CONTAINER: Final[Mapping[str, Any]] = {
    "runAsUser": ROOTLESS_UID,
    "runAsGroup": ROOTLESS_UID,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
ROOTLESS_POD: Final[Mapping[str, Any]] = {
    # Makes the emptyDir volumes (and fsGroup-aware claims) writable for the non-root UID.
    "fsGroup": ROOTLESS_UID,
    "runAsUser": ROOTLESS_UID,
    "runAsGroup": ROOTLESS_UID,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


# How each vCluster of a region runs, recorded as a label on every control-plane server so the
# next preview reads it back with the servers it already reads (like the k3s version): a live
# vCluster keeps its mode, because vCluster has no migration between root and non-root
# (vcluster-docs deploy/security/rootless-mode, version-0.20.0). `none`: not deployed. A live
# server without the label was created before rootless became the default: root.
MODE_LABEL_PREFIX: Final = "openova.io/vcluster-"
Mode = Literal["rootless", "root", "none"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
ALL_VCLUSTERS: Final[tuple[VClusterName, ...]] = get_args(VClusterName)


def mode_label_key(vcluster: VClusterName) -> str:
    return f"{MODE_LABEL_PREFIX}{vcluster}"


def mode(spec: VCluster) -> Mode:
    return "rootless" if spec.rootless else "root"


# The data volume: 5Gi on the server's disk; a Hetzner volume is 10 GiB at least (render/hcloud.py).
LOCAL_VOLUME_GI: Final = 5
# `openova.io/vcluster-<name>-storage` on every control-plane server: the StorageClass of each
# vCluster this `up` deploys, read back at the next preview. A StatefulSet's volumeClaimTemplates
# cannot change (Kubernetes refuses the update), so a live vCluster keeps its class. A live
# server without the label was created when every vCluster was on local-path.
STORAGE_LABEL_SUFFIX: Final = "-storage"


def volume_size(spec: VCluster) -> str:
    size = HCLOUD_VOLUME_MIN_GI if spec.storage_class == HCLOUD_VOLUMES else LOCAL_VOLUME_GI
    return f"{size}Gi"


def storage_label_key(vcluster: VClusterName) -> str:
    return f"{MODE_LABEL_PREFIX}{vcluster}{STORAGE_LABEL_SUFFIX}"


def storage_labels(cfg: StackConfig) -> dict[str, str]:
    """The StorageClass of every vCluster this `up` deploys (none for the others)."""
    active = active_vclusters(cfg)
    return {
        storage_label_key(name): cfg.vclusters.spec(name).storage_class
        if name in active
        else "none"
        for name in ALL_VCLUSTERS
    }


def mode_labels(cfg: StackConfig) -> dict[str, str]:
    """`openova.io/vcluster-<name>`: the mode of every vCluster this `up` deploys, else none."""
    active = active_vclusters(cfg)
    return {
        mode_label_key(name): mode(cfg.vclusters.spec(name)) if name in active else "none"
        for name in ALL_VCLUSTERS
    }


def security_values(spec: VCluster) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(pod, syncer, distro init containers) security contexts: the mode's, then the overrides.

    Rootless off is the chart's own (root) pod, exactly as regions created before rootless
    became the default run it: vCluster has no migration from root to non-root.
    """
    own = spec.security
    if not spec.rootless:
        syncer = own.container_security_context
        return (
            dict(own.pod_security_context),
            None if syncer is None else dict(syncer),
            dict(own.distro_security_context),
        )
    return (
        helm_merge(ROOTLESS_POD, own.pod_security_context),
        helm_merge(ROOTLESS_CONTAINER, own.container_security_context or {}),
        helm_merge(ROOTLESS_CONTAINER, own.distro_security_context),
    )


def vcluster_values(cfg: StackConfig, spec: VCluster) -> dict[str, Any]:
    """Chart values in the vcluster.yaml 0.20 shape (its schema refuses any other key)."""
    pod_ctx, syncer_ctx, distro_ctx = security_values(spec)
    security: dict[str, Any] = {"podSecurityContext": pod_ctx}
    if syncer_ctx is not None:
        security["containerSecurityContext"] = syncer_ctx
    distro: dict[str, Any] = {
        "enabled": True,
        "version": kubernetes_version(),
        **distro_images(kubernetes_version()),
    }
    if distro_ctx:
        distro["securityContext"] = distro_ctx
    # Exactly the label k3s puts on the nodes (naming.region_label); anything else leaves every
    # vCluster pod Pending. Workers carry it too, so the pod may run on a worker pool.
    scheduling: dict[str, Any] = {"nodeSelector": {REGION_LABEL_KEY: region_label(cfg)}}
    if spec.tolerations:
        scheduling["tolerations"] = [t.manifest() for t in spec.tolerations]
    return {
        # The syncer labels every virtual namespace with this level and checks each pod against
        # it before creating it here, so a tenant reads PodSecurity's refusal from their own API
        # instead of a pod that never appears; with a level set the chart also gives the CoreDNS
        # pod seccomp RuntimeDefault, which `restricted` demands of it in this namespace.
        "policies": {"podSecurityStandard": spec.pod_security.enforce},
        "controlPlane": {
            "distro": {"k8s": distro},
            "backingStore": {"database": {"embedded": {"enabled": True}}},
            "statefulSet": {
                "image": {
                    "registry": spec.image.registry,
                    "repository": spec.image.repository,
                    "tag": _image_tag(spec),
                },
                "resources": {
                    "requests": {"cpu": "200m", "memory": "384Mi"},
                    "limits": {"cpu": "2", "memory": "1Gi"},
                },
                "persistence": {
                    "volumeClaim": {
                        "enabled": True,
                        "size": volume_size(spec),
                        "storageClass": spec.storage_class,
                    }
                },
                "scheduling": scheduling,
                "security": security,
            },
            "service": {"spec": {"type": "ClusterIP"}},
            "coredns": {"deployment": {"image": pinned(COREDNS_IMAGE)}},
        },
        # The host's service range, given rather than detected: vCluster 0.20 finds it by
        # parsing an API server error that Kubernetes 1.33+ no longer words that way, then falls
        # back to 10.96.0.0/12, which misses a region with index > 15 or a custom serviceCidr.
        # A set `serviceCIDR` skips the detection. sources: loft-sh/vcluster v0.20.0
        # pkg/util/servicecidr/servicecidr.go (FallbackCIDR); the chart's values schema
        # (render/charts/vcluster-0.20.0.values.schema.json, top-level `serviceCIDR`); checked
        # 2026-12-04.
        "serviceCIDR": cfg.service_cidr,
        # The chart reports usage to loft.sh unless told not to (values.yaml `telemetry.enabled:
        # true` at v0.20.0); a sovereign region sends nothing out unless its operator opts in.
        "telemetry": {"enabled": spec.telemetry},
        "sync": {
            "toHost": {
                "services": {"enabled": True},
                "persistentVolumeClaims": {"enabled": True},
                "configMaps": {"enabled": True},
                "secrets": {"enabled": True},
                "ingresses": {"enabled": False},
            }
        },
    }


def namespace_labels(vcluster: VClusterName, spec: VCluster) -> dict[str, str]:
    pss = spec.pod_security
    return {
        ROLE_LABEL: vcluster,
        TOPOLOGY_LABEL: "dod-a4",
        **pss_labels(pss.enforce, pss.audit, pss.warn, pss.version),
    }


def peer_ports(cfg: StackConfig, source: str, destination: VClusterName) -> list[int] | None:
    """The only TCP ports `source` may open in `destination`'s namespace; None: any port."""
    if (source, destination) == ("dmz", "mgmt"):
        return list(cfg.vclusters.dmz_to_mgmt_ports)
    return None


def network_policy_spec(cfg: StackConfig, vcluster: VClusterName) -> NetworkPolicySpecArgsDict:
    """Default-deny ingress except from the same namespace and the allowed neighbours."""
    peers: list[NetworkPolicyPeerArgsDict] = [{"pod_selector": {}}]
    limited: list[NetworkPolicyIngressRuleArgsDict] = []
    for ns in INGRESS_FROM[vcluster]:
        peer: NetworkPolicyPeerArgsDict = {
            "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": ns}}
        }
        ports = peer_ports(cfg, ns, vcluster)
        if ports is None:
            peers.append(peer)
        else:
            limited.append(
                {"from_": [peer], "ports": [{"port": port, "protocol": "TCP"} for port in ports]}
            )
    if vcluster in WORLD_INGRESS:
        peers.append({"ip_block": {"cidr": "0.0.0.0/0"}})
    return {
        "pod_selector": {},
        "policy_types": ["Ingress"],
        "ingress": [{"from_": peers}, *limited],
    }


# The chart ships CoreDNS as a manifest template in a ConfigMap; the syncer fills it in and
# applies it inside the virtual cluster, and syncs its pod into this namespace, where the
# namespace's Pod Security level judges it like any other pod (pkg/coredns/coredns.go at
# v0.20.0: the syncer's own UID and GID, or 1001 when the syncer runs as root).
COREDNS_MANIFEST_KEY: Final = "coredns.yaml"
COREDNS_ROOT_FALLBACK_ID: Final = 1001
_TEMPLATE_VARIABLE: Final = re.compile(r"\{\{\s*\.([A-Z_]+)\s*\}\}")


def _effective_id(syncer: Mapping[str, Any], pod: Mapping[str, Any], key: str) -> int:
    value = syncer.get(key, pod.get(key))
    return value if isinstance(value, int) and value != 0 else COREDNS_ROOT_FALLBACK_ID


def coredns_objects(
    objects: Iterable[RenderedObject],
) -> list[tuple[RenderedObject, Mapping[str, Any]]]:
    """The objects the syncer applies from the chart's CoreDNS manifest, with the ConfigMap that
    holds them, its template variables filled as the syncer fills them."""
    objects = list(objects)
    sts = next((obj for obj in objects if obj.kind == "StatefulSet"), None)
    pod = _map(_map(_map(sts.doc if sts else {}).get("spec")).get("template"))
    pod_spec = _map(pod.get("spec"))
    empty: Mapping[str, Any] = {}
    syncer = next(
        (_map(c) for c in _list(pod_spec.get("containers")) if _map(c).get("name") == SYNCER),
        empty,
    )
    syncer_ctx, pod_ctx = _map(syncer.get("securityContext")), _map(pod_spec.get("securityContext"))
    variables = {
        "RUN_AS_USER": str(_effective_id(syncer_ctx, pod_ctx, "runAsUser")),
        "RUN_AS_GROUP": str(_effective_id(syncer_ctx, pod_ctx, "runAsGroup")),
        "IMAGE": COREDNS_IMAGE,
    }
    found: list[tuple[RenderedObject, Mapping[str, Any]]] = []
    for obj in objects:
        data = _map(obj.doc.get("data"))
        if obj.kind != "ConfigMap" or COREDNS_MANIFEST_KEY not in data:
            continue
        text = _TEMPLATE_VARIABLE.sub(
            lambda m: variables.get(m.group(1), ""), str(data[COREDNS_MANIFEST_KEY])
        )
        found.extend((obj, doc) for doc in _manifest_documents(text))
    return found


@functools.lru_cache(maxsize=16)
def _manifest_documents(text: str) -> tuple[Mapping[str, Any], ...]:
    # The plan, the Pod Security check and the image list each read the same manifest: parse
    # it once per process (libyaml when present; the pure-Python loader took 80 ms a vCluster).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(_map(doc) for doc in yaml.load_all(text, Loader=loader) if doc)  # a safe loader


def coredns_pods(objects: Iterable[RenderedObject]) -> list[PodTemplate]:
    """The CoreDNS pod template(s) the syncer will create in the vCluster's namespace."""
    return [
        PodTemplate(
            holder,
            f"data.{COREDNS_MANIFEST_KEY}",
            _map(_map(_map(doc.get("spec")).get("template")).get("spec")),
        )
        for holder, doc in coredns_objects(objects)
        if doc.get("kind") == "Deployment"
    ]
