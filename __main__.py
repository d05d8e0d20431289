"""One region of an OpenOva Sovereign on Hetzner Cloud: this stack's servers and first slots."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from checks.preflight import preflight
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.kubeconfig import Kubeconfig, KubeconfigArgs
from components.network import RegionNetwork, RegionNetworkArgs
from components.slots import build_slots
from config.models import load_config, registry_mirror_password
from render.naming import prefix, region_label
from render.slots import active_vclusters

# Validates every sovereign:* key (and the checks across them) before any resource exists.
cfg = load_config(check=preflight)
name = prefix(cfg)

network = RegionNetwork(name, RegionNetworkArgs(cfg=cfg))
control_plane = ControlPlane(
    name,
    ControlPlaneArgs(cfg=cfg, network=network, registry_password=registry_mirror_password()),
)
first_server = control_plane.servers[0]

kubeconfig = Kubeconfig(
    name,
    KubeconfigArgs(
        cfg=cfg,
        host=control_plane.public_ips[0],
        server_id=first_server.id,
        private_key=network.deployer_private_key,
        wait_for=list(control_plane.servers),
    ),
)

provider = k8s.Provider(
    f"{name}-k8s",
    kubeconfig=kubeconfig.kubeconfig,
    # A stable identity: a re-read kubeconfig (new token, new address) must not look like a
    # new cluster, which would replace every Kubernetes resource of the region.
    cluster_identifier=name,
    # After the servers are destroyed, `pulumi destroy` drops the cluster's resources from state
    # instead of hanging on an API server that no longer exists.
    delete_unreachable=True,
)

build_slots(cfg, provider)
vclusters = active_vclusters(cfg)

pulumi.export("regionKey", cfg.region.key)
pulumi.export("role", cfg.region.role)
# Index and CIDRs let `./sovereign plan --all --live` check the deployed fleet like the offline one.
pulumi.export("regionIndex", cfg.region.index)
pulumi.export("podCidr", cfg.pod_cidr)
pulumi.export("serviceCidr", cfg.service_cidr)
pulumi.export("regionLabel", region_label(cfg))
pulumi.export("controlPlanePublicIps", control_plane.public_ips)
pulumi.export("controlPlanePrivateIps", control_plane.private_ips)
pulumi.export("loadBalancerIp", control_plane.load_balancer_ip)
pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig.kubeconfig))
pulumi.export("vclusters", vclusters)
pulumi.export("vclusterCount", len(vclusters))
