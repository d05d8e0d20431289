"""The host's fence around Hetzner's metadata service (pure): only what needs it may reach it.

Hetzner serves user_data from 169.254.169.254 to anything on the server's network for the
server's whole life, and user_data holds the k3s token (every server) and the cluster CA keys
(cp-1). Cilium's policy denies it to pod endpoints; host-network pods (Cilium's agent and envoy,
system-upgrade-controller, the CCM of slot 04) share the host's network namespace, so their
traffic leaves through the host's own output path, where this nftables chain decides by the
socket's owner.

Who may reach it (METADATA_CLIENTS), and why every other socket is refused:
- sockets of systemd services (cgroup `system.slice`): cloud-init's own stages at every boot
  (cloud-init-local/-network/config/final are services), k3s's ExecStartPre address wait
  (/usr/local/sbin/sovereign-private-address, which reads /private-networks), Hetzner's image
  tools run from udev. They run as root on the host, which can read the token on disk anyway.
- the Hetzner CCM, a host-network pod, by its user id (`CCM_UID`): it reads /private-networks
  when HCLOUD_NETWORK is set, so its pod must run as exactly this uid.
Every container, host-network or not, lives under the kubelet's `kubepods` cgroup, never under
`system.slice`, so a host-network pod running as root is refused like any other.

The fence loads before k3s at every boot (`Before=k3s.service k3s-agent.service`: the unit
names the k3s installer gives a server and an agent; a worker pool's agents boot from the same
renderer), so no pod ever starts
before it; ordering it after cloud-final instead would leave every reboot a window in which k3s
and its host-network pods run unfenced, and cloud-init needs no such ordering since its
stages are services. The CSI node plugin is an ordinary pod (pod network): Cilium's deny leaves
it out by namespace and labels (METADATA_POD_EXCEPTIONS below), and this fence never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

METADATA_ADDRESS: Final = "169.254.169.254"
FENCE_TABLE: Final = "sovereign_metadata"
FENCE_RULES_PATH: Final = "/etc/sovereign/metadata-fence.nft"
FENCE_UNIT: Final = "sovereign-metadata-fence.service"
FENCE_UNIT_PATH: Final = f"/etc/systemd/system/{FENCE_UNIT}"
# The Hetzner CCM's pod must run as this uid (securityContext.runAsUser) to read the metadata.
CCM_UID: Final = 64_900
# systemd puts every service (system units) under this slice; the kubelet puts every container
# under kubepods(.slice), a sibling at the root of the cgroup v2 tree.
SERVICES_CGROUP: Final = "system.slice"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataClient:
    """One allowed reader of the metadata service: what it is, how it is matched, the source."""

    what: str
    match: str
    source: str


METADATA_CLIENTS: Final = (
    MetadataClient(
        what="cloud-init (every boot: instance data, user_data, network config)",
        match=f'socket cgroupv2 level 1 "{SERVICES_CGROUP}"',
        source="cloud-init's systemd units (cloud-init-local/-network/-config/-final.service); "
        "DataSourceHetzner reads 169.254.169.254/hetzner/v1/metadata",
    ),
    MetadataClient(
        what="k3s's ExecStartPre address wait (sovereign-private-address, /private-networks)",
        match=f'socket cgroupv2 level 1 "{SERVICES_CGROUP}"',
        source="render/cloudinit.py PRIVATE_NETWORKS_URL, run from k3s.service",
    ),
    MetadataClient(
        what="Hetzner cloud-controller-manager (host network; /private-networks with "
        "HCLOUD_NETWORK set)",
        match=f"meta skuid {CCM_UID}",
        source="hetznercloud/hcloud-cloud-controller-manager hcloud/cloud.go@v1.35.0 (reads "
        "/private-networks at start with HCLOUD_NETWORK set); slot 04 runs it as CCM_UID "
        "(render/hcloud.py)",
    ),
)


def fence_rules() -> str:
    """The nftables ruleset: reload-safe (the table is emptied and re-created in one batch)."""
    accepts = "\n".join(f"    {m} accept" for m in dict.fromkeys(c.match for c in METADATA_CLIENTS))
    return f"""\
# Written by sovereign cloud-init: only host services and the CCM reach Hetzner's metadata
# (user_data holds the k3s token and CA keys); containers, host-network ones included, do not.
table inet {FENCE_TABLE}
delete table inet {FENCE_TABLE}
table inet {FENCE_TABLE} {{
  chain output {{
    type filter hook output priority filter; policy accept;
    ip daddr {METADATA_ADDRESS} jump metadata
  }}
  chain metadata {{
{accepts}
    counter reject with icmpx type admin-prohibited
  }}
}}
"""


FENCE_UNIT_TEXT: Final = f"""\
# Written by sovereign cloud-init: the metadata fence, in place before k3s starts any pod.
[Unit]
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target k3s.service k3s-agent.service
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {FENCE_RULES_PATH}
[Install]
WantedBy=multi-user.target
RequiredBy=k3s.service k3s-agent.service
"""


# --- the pod side: Cilium's deny policy and the pods it exempts -------------------------------

# Who Cilium's metadata deny (render/cilium.py `metadata_deny_policies`) leaves out: pods on the
# pod network that cannot start without the metadata service. Each is matched by its namespace
# and its chart's pod labels, all of them at once; a pod with the same labels in any other
# namespace, or in kube-system with one label different, is denied. Who can create pods in
# kube-system can read the token from its Secrets anyway.
HCLOUD_CSI_NODE_LABELS: Final = {
    # hetznercloud/csi-driver chart/templates/node/daemonset.yaml@v2.22.1: the standard labels
    # (name = chart name, as nameOverride is unset) plus the component.
    "app.kubernetes.io/name": "hcloud-csi",
    "app.kubernetes.io/component": "node",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataPodException:
    """Pods the Cilium deny leaves out: namespace and labels, what it reads and the source."""

    what: str
    namespace: str
    labels: Mapping[str, str]
    source: str


METADATA_POD_EXCEPTIONS: Final = (
    MetadataPodException(
        what="Hetzner CSI node plugin (DaemonSet hcloud-csi-node, pod network)",
        namespace="kube-system",
        labels=HCLOUD_CSI_NODE_LABELS,
        source="hetznercloud/csi-driver cmd/main.go and internal/app/app.go@v2.22.1: reads "
        "/instance-id at start (no override) and exits without it; node.hostNetwork is false "
        "by default (chart values.yaml)",
    ),
)
