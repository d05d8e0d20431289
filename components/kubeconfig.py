"""The region's kubeconfig, built from the program's own CAs, and the waits around the first chart.

No SSH: the API's CA and the deployer's client certificate come from `ClusterPki`. A bounded
wait on the deployer confirms the API answers and every control-plane node joined; the
Kubernetes provider and so every chart wait for it. Nodes become Ready only once Cilium installs
the CNI (k3s runs without flannel), so the Ready wait (`wait_for_nodes(..., "Ready")`) follows
the Cilium release and every later slot waits for it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import pulumi
import pulumi_command as command
import pulumi_random as random
import yaml

from components.pki import ClusterPki
from config.models import StackConfig
from render import wait_for_api
from render.cloudinit import ETCD_S3_SECRET_NAME
from render.naming import prefix

# cloud-init plus the k3s download and an HA join take 3-6 minutes on a fresh Hetzner server
# (hetzner-k3s #458 reports cloud-init alone taking up to 6 minutes); twice that is the bound.
WAIT_SECONDS: Final = 900
WAIT_SCRIPT: Final = Path(wait_for_api.__file__).read_text()
# Every snapshot in the bucket holds the Secret k3s read to upload it, and a restore needs backups
# on (checks/day2.py): after a restore it must be back, or k3s started a new, empty etcd.
RESTORED_OBJECT: Final = f"/api/v1/namespaces/kube-system/secrets/{ETCD_S3_SECRET_NAME}"


def render_kubeconfig(server: str, context: str, ca_pem: str, cert_pem: str, key_pem: str) -> str:
    """A kubeconfig for `server` authenticating with the deployer's client certificate."""

    def b64(pem: str) -> str:
        return base64.b64encode(pem.encode()).decode()

    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": context,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeWait:
    """What a bounded wait on the deployer needs: API, client certificate, nodes (all secret)."""

    environment: pulumi.Output[dict[str, str]]
    # A new or replaced server must be waited for again.
    triggers: Sequence[pulumi.Input[str]]


def wait_for_nodes(
    name: str,
    nodes: NodeWait,
    must_be: Literal["registered", "Ready"],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> command.local.Command:
    """`render/wait_for_api.py` on the deployer, within WAIT_SECONDS: the API, then every node."""
    return command.local.Command(
        name,
        create=WAIT_SCRIPT,
        interpreter=["python3", "-c"],
        environment=pulumi.Output.secret(
            nodes.environment.apply(lambda env: {**env, "SOVEREIGN_NODES_MUST_BE": must_be})
        ),
        triggers=list(nodes.triggers),
        logging=command.local.Logging.STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            custom_timeouts=pulumi.CustomTimeouts(create=f"{WAIT_SECONDS // 60 + 5}m"),
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeconfigArgs:
    cfg: StackConfig
    server: pulumi.Input[str]
    pki: ClusterPki
    node_names: Sequence[str]
    node_ips: Sequence[pulumi.Input[str]]
    server_ids: Sequence[pulumi.Input[str]]
    init_server_id: pulumi.Input[str]
    # cp-1 joined or restored the existing cluster rather than starting one: same cluster.
    same_cluster: bool
    # This `up` boots cp-1 from an etcd snapshot: before the identity is kept, an object every
    # snapshot holds must be back (else k3s started empty and the program refuses to go on).
    restoring: bool = False
    wait_for: Sequence[pulumi.Resource]


class Kubeconfig(pulumi.ComponentResource):
    TYPE: Final = "sovereign:infra:Kubeconfig"

    def __init__(
        self, name: str, args: KubeconfigArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg, pki = args.cfg, args.pki
        context = prefix(cfg)
        self.server: pulumi.Output[str] = pulumi.Output.from_input(args.server)
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(
                self.server, pki.server_ca_pem, pki.client_cert_pem, pki.client_key_pem
            ).apply(lambda v: render_kubeconfig(v[0], context, v[1], v[2], v[3]))
        )
        self.nodes = NodeWait(
            environment=pulumi.Output.secret(
                pulumi.Output.all(
                    self.server,
                    pki.server_ca_pem,
                    pki.client_cert_pem,
                    pki.client_key_pem,
                    pulumi.Output.all(*args.node_ips),
                ).apply(
                    lambda v: {
                        "SOVEREIGN_API": str(v[0]),
                        "SOVEREIGN_CA": str(v[1]),
                        "SOVEREIGN_CERT": str(v[2]),
                        "SOVEREIGN_KEY": str(v[3]),
                        "SOVEREIGN_NODES": ",".join(args.node_names),
                        "SOVEREIGN_NODE_IPS": ",".join(str(ip) for ip in v[4]),
                        "SOVEREIGN_TIMEOUT": str(WAIT_SECONDS),
                        **({"SOVEREIGN_MUST_EXIST": RESTORED_OBJECT} if args.restoring else {}),
                    }
                )
            ),
            triggers=list(args.server_ids),
        )
        self.ready = wait_for_nodes(
            f"{name}-wait", self.nodes, "registered", parent=self, depends_on=args.wait_for
        )
        # The cluster's identity: the server CA's key and the server that initialised etcd. A new
        # CA or a cp-1 that started a new cluster is a new cluster; Pulumi then creates every
        # object in it again. A cp-1 that joined or restored keeps the identity.
        self.identity = random.RandomId(
            f"{name}-cluster-id",
            byte_length=4,
            keepers={
                "serverCaKey": pki.server_ca_fingerprint,
                "initServer": args.init_server_id,
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["keepers.initServer"] if args.same_cluster else [],
                # Decided only once the API answered and, after a restore, held its old objects.
                depends_on=[self.ready],
            ),
        )
        self.cluster_identifier: pulumi.Output[str] = pulumi.Output.concat(
            context, "-", self.identity.hex
        )
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "server": self.server,
                "clusterIdentifier": self.cluster_identifier,
            }
        )
