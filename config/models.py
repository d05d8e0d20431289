"""Stack configuration: the only reader of `pulumi.Config`.

Every `sovereign:*` object is validated into frozen pydantic models before the first resource is
declared, and every invalid key is reported at once by the path the user typed
(`sovereign:controlPlane.count`), with the value given and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, cast, get_args, get_origin

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from config import grammar
from config import secrets as secret_config
from config.base import ConfigModel, Flag
from config.day2 import Api, Backups, Replacement, Upgrades, backup_credential_problems
from config.errors import FieldError, Problem, SovereignConfigError
from config.fleet import Fleet
from config.pss import VERSION_PATTERN
from config.pss import Level as PssLevel
from config.quantity import quantity
from config.secrets import HCLOUD_TOKEN_KEY, NAMESPACE, REGISTRY_PASSWORD_KEY
from config.server_types import CATALOGUE as SERVER_TYPES
from config.support import MATRIX, minor
from config.workers import PoolName, Toleration, WorkerPool

Role = Literal["primary", "secondary"]
Location = Literal["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
VClusterName = Literal["mgmt", "dmz", "rtz"]

# Hetzner private networks live in one network zone per location family.
NETWORK_ZONES: Final[Mapping[str, str]] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}

# kube-apiserver's default --service-node-port-range; k3s leaves it unchanged and the program sets
# no other. source: https://kubernetes.io/docs/reference/command-line-tools-reference/
# kube-apiserver/ (`--service-node-port-range`, default 30000-32767; checked 2026-12-04).
NODE_PORT_RANGE: Final = (30000, 32767)

# Pod CIDR 10.(42+index).0.0/16 must stay below the service range 10.96.0.0/16 of index 0.
MAX_REGION_INDEX: Final = 53

# A region key is an offered location plus an optional ordinal: every location can be a key.
_REGION_KEY: Final = re.compile(
    "(" + "|".join(re.escape(loc) for loc in get_args(Location)) + r")(-[0-9]{1,2})?"
)
_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$"
)
_FQDN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _cidr_problem(value: str) -> str:
    """What is wrong with a range `ipaddress` refused, said without repeating it."""
    address, slash, prefix = value.partition("/")
    try:
        family = ipaddress.ip_address(address)
    except ValueError:
        return "a CIDR such as 10.0.0.0/16 or 2001:db8::/32"
    if slash and prefix.isdigit():
        most = family.max_prefixlen
        return (
            f"the prefix length is out of range: an IPv{family.version} range takes /0 to "
            f"/{most}, e.g. {'10.0.0.0/16' if family.version == 4 else '2001:db8::/32'}"
        )
    return "a CIDR: an address, '/' and a prefix length, e.g. 10.0.0.0/16 or 2001:db8::/32"


def _cidr(value: str) -> str:
    # ipaddress's own messages repeat the input; ours must not (the key may be secret).
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        pass
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(_cidr_problem(value)) from None
    raise ValueError(
        "a CIDR with no host bits set: written with the range's first address, e.g. 10.0.0.0/16"
    )


_SSH_WORLD: Final = (
    "SSH open to the whole internet is refused; list the deployer's and operators' "
    "addresses instead, e.g. 203.0.113.7/32"
)


def _not_world(value: str) -> str:
    if grammar.world_families([ipaddress.ip_network(value)]):
        raise ValueError(_SSH_WORLD)
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
# An address in the region's Hetzner network (servers, load balancers).
PrivateIPv4 = Annotated[str, AfterValidator(grammar.hetzner_address)]
SshCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_not_world)]
NetworkCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(grammar.hetzner_network)]
SubnetCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(grammar.hetzner_subnet)]
PodCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(grammar.pod_range)]
ServiceCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(grammar.service_range)]
RegistryHost = Annotated[str, AfterValidator(grammar.registry_host)]
ChartVersion = Annotated[str, AfterValidator(grammar.chart_version)]


# An exact k3s release (`v1.35.6+k3s1`): what controlPlane.k3sVersion and upgrade-path take.
K3S_VERSION: Final = re.compile(r"v1\.[0-9]+\.[0-9]+\+k3s[0-9]+")


class Region(ConfigModel):
    """Which region of the Sovereign this stack is."""

    role: Role = Field(description="primary (MGMT + DMZ) or secondary (DMZ + RTZ), DoD A4.")
    key: str = Field(
        description="Region key: the location plus an optional ordinal: fsn1, hel1-2, ash."
    )
    location: Location = Field(description="Hetzner location of every server of the region.")
    index: int = Field(ge=0, le=MAX_REGION_INDEX, description="0 for the primary; drives CIDRs.")
    fqdn: str = Field(description="The Sovereign's domain, e.g. omantel.openova.io.")

    @field_validator("key")
    @classmethod
    def _key_shape(cls, value: str) -> str:
        if not _REGION_KEY.fullmatch(value):
            offered = ", ".join(get_args(Location))
            raise ValueError(
                f"a location ({offered}) with an optional ordinal, e.g. fsn1, hel1-2 or ash-2"
            )
        return value

    @field_validator("fqdn")
    @classmethod
    def _fqdn_shape(cls, value: str) -> str:
        if not _FQDN.fullmatch(value):
            raise ValueError(
                "a lower-case DNS name with at least two labels, e.g. omantel.openova.io"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Region:
        if self.key.split("-")[0] != self.location:
            raise FieldError(
                "key",
                f"must start with its location {self.location!r} "
                f"(e.g. {self.location} or {self.location}-2), so the key names where the "
                "servers are",
            )
        if self.role == "primary" and self.index != 0:
            raise FieldError("index", "the primary region has index 0")
        if self.role == "secondary" and self.index == 0:
            raise FieldError("index", "index 0 is the primary's; a secondary takes 1 or more")
        return self


class ControlPlane(ConfigModel):
    """The k3s server nodes of this region."""

    server_type: str = Field(
        default="cpx32",
        description="Hetzner server type sold in the region's location (config/data catalogue).",
    )
    count: int = Field(default=1, description="1, or 3 for HA with embedded etcd.")
    image: str = Field(default="ubuntu-24.04", description="Hetzner image name.")
    k3s_version: str = Field(
        alias="k3sVersion",
        description="Pinned k3s release, e.g. v1.35.6+k3s1; its minor must be supported by "
        "the Cilium and cert-manager lines (docs/versions.md).",
    )
    protect: Flag = Field(default=True, description="Pulumi `protect` on control-plane servers.")
    allow_replacement: Flag = Field(
        default=False,
        description="Opt in to replacing servers on user_data or image changes, one at a time.",
    )

    @field_validator("server_type")
    @classmethod
    def _server_type(cls, value: str) -> str:
        # Whether the location sells it is judged across keys (checks/hetzner.py).
        why = SERVER_TYPES.unknown(value)
        if why is not None:
            raise ValueError(why)
        return value

    @field_validator("count")
    @classmethod
    def _count(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(
                "1 (single server) or 3 (HA with embedded etcd); 2 servers have no etcd quorum "
                "and lose the cluster when either fails"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]+-[0-9][0-9.]*", value):
            raise ValueError("a Hetzner image name, e.g. ubuntu-24.04")
        return value

    @field_validator("k3s_version")
    @classmethod
    def _k3s_version(cls, value: str) -> str:
        if not K3S_VERSION.fullmatch(value):
            raise ValueError(
                "an exact k3s release, e.g. v1.35.6+k3s1 (channels and 'latest' are not pins)"
            )
        return value


def _ssh_public_key(value: str) -> str:
    if "PRIVATE KEY" in value:
        raise ValueError(
            "this is a private key; only public keys belong in config (rotate that key now)"
        )
    if not _SSH_KEY.fullmatch(value):
        raise ValueError(
            "an OpenSSH public key: ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa"
        )
    return value


class Access(ConfigModel):
    """Who can reach the servers."""

    ssh_public_keys: list[Annotated[str, AfterValidator(_ssh_public_key)]] = Field(
        min_length=1,
        max_length=20,
        description="Operator SSH public keys installed on every server.",
    )
    ssh_allowed_cidrs: list[SshCidr] = Field(
        default_factory=list[str],
        # Left out, it is as empty as an explicit []: refused the same way.
        validate_default=True,
        max_length=20,
        description="Sources allowed to TCP 22 (operators); the default API sources too.",
    )
    api_allowed_cidrs: Annotated[list[Cidr], Field(min_length=1, max_length=20)] | None = Field(
        default=None,
        description="Sources allowed to the Kubernetes API, TCP 6443. Unset: the "
        "sshAllowedCidrs sources; the whole internet only when listed (0.0.0.0/0, ::/0).",
    )

    @field_validator("ssh_allowed_cidrs")
    @classmethod
    def _deployer_reachable(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "empty, but operators reach the servers over SSH only from these sources, and the "
                "Kubernetes API that `pulumi up` deploys through defaults to them "
                "(sovereign:access.apiAllowedCidrs); add the deployer's and operators' addresses, "
                'e.g. ["203.0.113.7/32"]'
            )
        # However the ranges are split, their union must not be a whole address family.
        world = grammar.world_families([ipaddress.ip_network(cidr) for cidr in value])
        if world:
            raise ValueError(
                f"together these ranges cover {' and '.join(world)}, the whole internet. "
                + _SSH_WORLD
            )
        return value

    @property
    def api_sources(self) -> list[str]:
        """Who reaches TCP 6443: the listed sources, else the SSH sources (never the world)."""
        if self.api_allowed_cidrs is None:
            return list(self.ssh_allowed_cidrs)
        return list(self.api_allowed_cidrs)


class Network(ConfigModel):
    """Hetzner private network and the cluster's per-region CIDRs."""

    cidr: NetworkCidr = Field(
        default="10.0.0.0/16", description="Hetzner private network: RFC 1918 IPv4, /24 or larger."
    )
    subnet_cidr: SubnetCidr = Field(
        default="10.0.1.0/24", description="Cloud subnet of the servers, inside cidr."
    )
    first_control_plane_ip: PrivateIPv4 = Field(
        default="10.0.1.2", description="Private IP of CP 1; the others follow."
    )
    pod_cidr: PodCidr | None = Field(
        default=None, description="Default 10.(42+index).0.0/16; private IPv4, a /24 per node."
    )
    service_cidr: ServiceCidr | None = Field(
        default=None, description="Default 10.(96+index).0.0/16; private IPv4, /12 to /28."
    )
    worker_subnet_cidr: SubnetCidr = Field(
        default="10.0.2.0/24",
        description="Cloud subnet of the worker pools, inside cidr; Hetzner picks each "
        "worker's address in it, apart from the pinned control-plane and LB addresses.",
    )


class LoadBalancer(ConfigModel):
    """Optional Hetzner load balancer in front of Cilium's Gateway listeners on every node."""

    enabled: Flag = Field(
        default=False,
        description="Create a Hetzner load balancer for 80/443; needs cilium.gatewayApi.enabled.",
    )
    type: Literal["lb11", "lb21", "lb31"] = Field(default="lb11", description="Hetzner LB type.")
    private_ip: PrivateIPv4 = Field(
        default="10.0.1.254", description="Pinned private IP in the subnet."
    )
    http_node_port: int = Field(
        default=18080,
        ge=1024,
        le=65535,
        description="Host port of the Gateway's HTTP listener; the LB forwards 80 here.",
    )
    https_node_port: int = Field(
        default=18443,
        ge=1024,
        le=65535,
        description="Host port of the Gateway's TLS listener; the LB forwards 443 here.",
    )
    pool: str | None = Field(
        default=None,
        description="Worker pool that carries ingress: the LB targets its servers by label "
        "and the Gateway listens only there. Unset: the control-plane servers.",
    )

    @field_validator("http_node_port", "https_node_port")
    @classmethod
    def _outside_node_port_range(cls, value: int) -> int:
        # Envoy binds these on every node's host network; inside the NodePort range the API
        # server could hand the same port to a NodePort Service, and whichever binds second fails.
        low, high = NODE_PORT_RANGE
        if low <= value <= high:
            raise ValueError(
                f"a host port outside the NodePort range {low}-{high} (kube-apiserver's "
                "--service-node-port-range default, which k3s keeps), e.g. 18080 and 18443"
            )
        return value


# Every registry the pinned charts pull from (their rendered images: tests/test_render_checks.py
# keeps this in step), each through its own proxy project on the mirror host.
DEFAULT_MIRROR_PROJECTS: Final[Mapping[str, str]] = {
    "docker.io": "proxy-dockerhub",
    "ghcr.io": "proxy-ghcr",
    "quay.io": "proxy-quay",
    "registry.k8s.io": "proxy-k8s",
}


class RegistryMirror(ConfigModel):
    """Opt-in containerd mirror through an image proxy (k3s registries.yaml)."""

    enabled: Flag = Field(
        default=False,
        description="Pull every image through the proxy (/etc/rancher/k3s/registries.yaml); "
        "off: each image comes from its upstream registry without credentials.",
    )
    host: RegistryHost = Field(
        default="harbor.openova.io", description="Proxy registry host[:port], no scheme."
    )
    projects: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_MIRROR_PROJECTS),
        description="Upstream registry -> proxy project on the host; every registry the "
        "charts pull from needs one.",
    )
    username: str | None = Field(
        default=None,
        description="Mirror login; the password is the secret key "
        f"sovereign:{REGISTRY_PASSWORD_KEY}.",
    )


class GatewayApi(ConfigModel):
    enabled: Flag = Field(
        default=False,
        description="Cilium Gateway API; applies its CRDs first. With loadBalancer.enabled, "
        "a Gateway listens on the host at the LB's target ports.",
    )
    crds_version: Annotated[str, AfterValidator(grammar.gateway_api_release)] | None = Field(
        default=None,
        description="Gateway API CRDs; unset: the version the Cilium line passes conformance "
        "with (v1.4.0 for 1.19, v1.3.0 for 1.18; docs/versions.md).",
    )


class Cilium(ConfigModel):
    version: ChartVersion = Field(default="1.19.6", description="Pinned Cilium chart version.")
    wireguard: Flag = Field(default=True, description="Transparent WireGuard encryption.")
    gateway_api: GatewayApi = Field(default_factory=GatewayApi, description="Gateway API.")

    @property
    def gateway_api_crds(self) -> str:
        """The Gateway API CRDs version applied: the pin, else the Cilium line's own."""
        if self.gateway_api.crds_version is not None:
            return self.gateway_api.crds_version
        line = MATRIX.cilium.get(minor(self.version) or "")
        # A line with no data is refused by preflight (checks/versions.py), naming the key.
        return line.gateway_api[-1] if line is not None and line.gateway_api else ""


class CertManager(ConfigModel):
    version: ChartVersion = Field(
        default="v1.21.1", description="Pinned cert-manager chart version."
    )


class PodSecurity(ConfigModel):
    """Pod Security Standard labels of a vCluster namespace."""

    enforce: PssLevel = Field(
        default="restricted",
        description="Level PodSecurity enforces; `restricted` needs a rootless vCluster.",
    )
    audit: PssLevel = Field(default="restricted", description="Level recorded in the audit log.")
    warn: PssLevel = Field(default="restricted", description="Level warned about to clients.")
    version: str = Field(default="latest", description="`latest` or `v1.NN`.")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_PATTERN.fullmatch(value):
            raise ValueError("`latest` or a Kubernetes minor version such as v1.31")
        return value


class Image(ConfigModel):
    # v0.20.0 publishes one build as ghcr.io/loft-sh/vcluster and .../vcluster-oss (its
    # .goreleaser.yaml); the chart's default loft-sh/vcluster-pro is built outside the open
    # source repository. render/vcluster_image.yaml keeps the facts and their sources.
    registry: RegistryHost = Field(default="ghcr.io", description="Registry (upstream, public).")
    repository: Annotated[str, AfterValidator(grammar.oci_repository)] = Field(
        default="loft-sh/vcluster-oss", description="Repository."
    )
    tag: str = Field(default="0.20.0", description="Pinned tag.")
    digest: str | None = Field(default=None, description="Optional sha256 digest pin.")

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not value.strip() or value == "latest":
            raise ValueError("pinned image required: an exact tag such as 0.20.0")
        return grammar.oci_tag(value)

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        return None if value is None else grammar.oci_digest(value)


class VClusterSecurity(ConfigModel):
    """Security contexts passed to the chart (`controlPlane.statefulSet.security`, distro),
    merged over the rootless ones (`null` removes a key); with rootless off, over the chart's."""

    pod_security_context: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="Pod level, merged over the mode's."
    )
    container_security_context: dict[str, Any] | None = Field(
        default=None,
        description="Syncer container, merged over the mode's (rootless off and unset: the "
        "chart's root default).",
    )
    distro_security_context: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="k8s distro init containers, likewise."
    )


Quantity = Annotated[str, AfterValidator(quantity)]


class Quota(ConfigModel):
    """ResourceQuota `hard` of the vCluster's namespace, where every tenant pod lands.

    Unset: the role's default (render/tenants.py, sized so the vCluster's own pods fit).
    """

    requests_cpu: Quantity | None = Field(default=None, description="requests.cpu.")
    requests_memory: Quantity | None = Field(default=None, description="requests.memory.")
    limits_cpu: Quantity | None = Field(default=None, description="limits.cpu.")
    limits_memory: Quantity | None = Field(default=None, description="limits.memory.")
    requests_storage: Quantity | None = Field(
        default=None, description="requests.storage (all claims together)."
    )
    pods: int | None = Field(default=None, ge=1, description="Pods.")
    persistent_volume_claims: int | None = Field(
        default=None, ge=0, description="PersistentVolumeClaims."
    )
    services: int | None = Field(default=None, ge=0, description="Services.")
    services_node_ports: int | None = Field(
        default=None,
        ge=0,
        description="services.nodeports; default 0: a tenant NodePort would take a port on "
        "every node.",
    )
    services_load_balancers: int | None = Field(
        default=None,
        ge=0,
        description="services.loadbalancers; default 0: each would be a billed cloud load "
        "balancer.",
    )


class ContainerLimits(ConfigModel):
    """LimitRange of the vCluster's namespace: what a container gets when it asks for nothing,
    and the most one container may ask for (the vCluster's own syncer asks for 2 CPU, 1Gi)."""

    default_request_cpu: Quantity = Field(default="50m", description="Default CPU request.")
    default_request_memory: Quantity = Field(default="64Mi", description="Default memory request.")
    default_cpu: Quantity = Field(default="500m", description="Default CPU limit.")
    default_memory: Quantity = Field(default="512Mi", description="Default memory limit.")
    max_cpu: Quantity = Field(default="2", description="Largest CPU limit of one container.")
    max_memory: Quantity = Field(
        default="2Gi", description="Largest memory limit of one container."
    )


class VCluster(ConfigModel):
    enabled: Flag | None = Field(
        default=None, description="Unset: on where the region's role runs it (A4)."
    )
    rootless: Flag = Field(
        default=True,
        description="Run the vCluster pod as a non-root user, seccomp RuntimeDefault, no "
        "privilege escalation, no capabilities, read-only root filesystem. Fixed at creation: "
        "a live vCluster keeps its mode until it is recreated (docs/security.md).",
    )
    pod_security: PodSecurity = Field(default_factory=PodSecurity, description="PSS labels.")
    image: Image = Field(default_factory=Image, description="Syncer image.")
    telemetry: Flag = Field(
        default=False,
        description="Send vCluster usage telemetry to loft.sh (the chart's default is on).",
    )
    security: VClusterSecurity = Field(
        default_factory=VClusterSecurity, description="Security contexts."
    )
    quota: Quota = Field(default_factory=Quota, description="Namespace ResourceQuota.")
    limits: ContainerLimits = Field(
        default_factory=ContainerLimits, description="Namespace LimitRange."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list[Toleration],
        max_length=10,
        description="Tolerations of the vCluster pod, e.g. for a tainted worker pool kept "
        "for it ({key, operator, value, effect}).",
    )
    storage_class: Literal["hcloud-volumes", "local-path"] = Field(
        default="hcloud-volumes",
        description="StorageClass of the vCluster's data volume: `hcloud-volumes` (Hetzner "
        "CSI, slot 05: a network volume in the region's location that outlives its server, "
        "10 GiB minimum, billed) or `local-path` (k3s: the server's own disk, fast and free, "
        "lost with that server). Fixed at creation: a live vCluster keeps its class "
        "(docs/day2.md, 'Durable vCluster data').",
    )


class Releases(ConfigModel):
    """How long each Helm release may take to become ready before `pulumi up` fails."""

    timeout_seconds: int = Field(default=600, ge=60, le=3600, description="Helm wait per release.")


class VClusters(ConfigModel):
    mgmt: VCluster = Field(default_factory=VCluster, description="MGMT vCluster (slot 58).")
    dmz: VCluster = Field(default_factory=VCluster, description="DMZ vCluster (slot 54).")
    rtz: VCluster = Field(default_factory=VCluster, description="RTZ vCluster (slot 59).")
    dmz_to_mgmt_ports: Annotated[list[int], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [443, 8443],
        description="The only TCP ports DMZ pods may open on MGMT pods (the pods' own ports): "
        "HTTPS, and 8443 for HTTPS served by a non-root pod that cannot bind 443.",
    )

    @field_validator("dmz_to_mgmt_ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if any(not 1 <= port <= 65535 for port in value):
            raise ValueError("TCP ports, 1-65535")
        return sorted(set(value))

    def spec(self, name: VClusterName) -> VCluster:
        return {"mgmt": self.mgmt, "dmz": self.dmz, "rtz": self.rtz}[name]


class StackConfig(ConfigModel):
    """Everything one region's stack needs, validated as a whole."""

    name: str = Field(description="The Sovereign's short name; prefixes every physical name.")
    region: Region
    control_plane: ControlPlane
    access: Access
    network: Network = Field(default_factory=Network)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    registry_mirror: RegistryMirror = Field(default_factory=RegistryMirror)
    cilium: Cilium = Field(default_factory=Cilium)
    cert_manager: CertManager = Field(default_factory=CertManager)
    releases: Releases = Field(default_factory=Releases)
    vclusters: VClusters = Field(default_factory=VClusters)
    fleet: Fleet = Field(default_factory=Fleet)
    api: Api = Field(default_factory=Api)
    cloud_controller: Literal["hetzner", "k3s"] = Field(
        default="hetzner",
        description="Who initialises nodes: `hetzner` (the Hetzner cloud controller manager, "
        "slot 04: providerID, LoadBalancer Services in the region's network; k3s runs with "
        "--disable-cloud-controller and kubelet cloud-provider=external) or `k3s` (its built-in "
        "controller, no LoadBalancer addresses): only for a region whose servers booted before "
        "the CCM existed (docs/day2.md, 'Handing nodes to the Hetzner CCM').",
    )
    upgrades: Upgrades = Field(default_factory=Upgrades)
    backups: Backups = Field(default_factory=Backups)
    replacement: Replacement = Field(default_factory=Replacement)
    workers: dict[PoolName, WorkerPool] = Field(
        default_factory=dict[str, WorkerPool],
        description="Named worker pools of k3s agents (empty: everything runs on the "
        "control plane).",
    )
    teardown: Flag = Field(
        default=False,
        description="Only to refresh a region whose cluster is gone: drop unreachable objects.",
    )
    test_run: Annotated[str, AfterValidator(grammar.label_value)] | None = Field(
        default=None,
        description="Marks a throwaway region: every Hetzner resource gets the label "
        "openova.io/test-run=<this>, which the e2e sweep deletes when left over "
        "(set by ./sovereign e2e).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # It prefixes Hetzner names and is a Hetzner and Kubernetes label value: no trailing '-'.
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,18}[a-z0-9]", value):
            raise ValueError(
                "2-20 lower-case letters, digits or '-', starting with a letter and ending with "
                "a letter or digit"
            )
        return value

    @property
    def pod_cidr(self) -> str:
        return self.network.pod_cidr or f"10.{42 + self.region.index}.0.0/16"

    @property
    def service_cidr(self) -> str:
        return self.network.service_cidr or f"10.{96 + self.region.index}.0.0/16"

    @property
    def control_plane_ips(self) -> tuple[str, ...]:
        first = ipaddress.IPv4Address(self.network.first_control_plane_ip)
        return tuple(str(first + n) for n in range(self.control_plane.count))

    @property
    def network_zone(self) -> str:
        return NETWORK_ZONES[self.region.location]


TOP_LEVEL_KEYS: Final = tuple(
    (field.alias or name) for name, field in StackConfig.model_fields.items()
)


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _path(loc: Sequence[int | str]) -> str:
    path = f"{NAMESPACE}:{loc[0]}" if loc else NAMESPACE
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _lookup(raw: Mapping[str, Any], loc: Sequence[int | str]) -> object:
    node: object = raw
    for part in loc:
        if isinstance(node, Mapping):
            if part not in node:
                return _MISSING
            node = cast(Mapping[Any, object], node)[part]
        elif isinstance(node, list) and isinstance(part, int):
            items = cast(list[object], node)
            if part >= len(items):
                return _MISSING
            node = items[part]
        else:
            return _MISSING
    return node  # pyright: ignore[reportUnknownVariableType]


_MISSING: Final = object()


def _leaves(value: object) -> list[str]:
    """Every scalar inside `value` as text: what a message about a secret key must not show."""
    if isinstance(value, Mapping):
        return [t for v in cast(Mapping[object, object], value).values() for t in _leaves(v)]
    if isinstance(value, list):
        return [t for v in cast(list[object], value) for t in _leaves(v)]
    if isinstance(value, bool) or value is None:
        return []
    text = str(value)
    return [text] if text.strip() else []


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "[redacted]", text)
    return text


def _as_typed(loc: Sequence[int | str], raw: Mapping[str, Any]) -> list[int | str]:
    """The key path in the words users typed: pydantic names a defaulted field by its Python
    name (`ssh_allowed_cidrs`), every other by its alias (`sshAllowedCidrs`)."""
    typed: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and "_" in part and _lookup(raw, [*typed, part]) is _MISSING:
            part = to_camel(part)
        typed.append(part)
    return typed


def _model_of(annotation: object) -> type[ConfigModel] | None:
    """The config model inside a field's type (`Network`, `list[X] | None`, `Annotated[...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, ConfigModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_of(arg)) is not None), None)


def _field_at(loc: Sequence[int | str]) -> tuple[type[ConfigModel] | None, str | None]:
    """The model holding the key at `loc` (in typed words) and that key's field name.

    A mapping of named objects (`workers: {<pool>: WorkerPool}`) has a user's name, not a
    field, as its next part: it is stepped over."""
    model: type[ConfigModel] | None = StackConfig
    field: str | None = None
    named = False
    for index, part in enumerate(loc):
        if model is None:
            return None, None
        if isinstance(part, int) or named:
            named = False
            continue
        by_key = {(info.alias or name): name for name, info in model.model_fields.items()}
        field = by_key.get(part, part if part in model.model_fields else None)
        if index == len(loc) - 1:
            return model, field
        if field is None:
            return None, None
        annotation = model.model_fields[field].annotation
        named = get_origin(annotation) in (dict, Mapping)
        model = _model_of(annotation)
    return model, field


def _secret_meant(loc: Sequence[int | str], value: object) -> str | None:
    """The secret key (config.secrets.SECRET_KEYS) a mistyped or misplaced key stands for:
    `hcloudtoken`, `hcloud: {token: ...}`, `backups.secretKey`, `registryMirror.password`."""
    words = [str(part) for part in loc if isinstance(part, str)]
    inner = (
        [str(key) for key in cast(Mapping[object, object], value)]
        if isinstance(value, Mapping)
        else []
    )
    lowered = {key.lower(): key for key in secret_config.SECRET_KEYS}
    for path in [words, *([*words, key] for key in inner)]:
        joined = "".join(w if i == 0 else w[:1].upper() + w[1:] for i, w in enumerate(path))
        near = difflib.get_close_matches(joined.lower(), list(lowered), n=1, cutoff=0.85)
        if near:
            return lowered[near[0]]
    return None


def _unknown_key(loc: Sequence[int | str], value: object = None) -> tuple[str, str | None]:
    """`unknown key`, with the nearest known key when one is close (a typo); and that key."""
    secret = _secret_meant(loc, value)
    if secret is not None:
        return (
            f"unknown key: did you mean the secret {NAMESPACE}:{secret}? It is a top-level "
            f"key of its own, set with `pulumi config set --secret {NAMESPACE}:{secret} "
            "<value>`; remove this one"
        ), None
    model, _ = _field_at(loc)
    known = [info.alias or name for name, info in model.model_fields.items()] if model else []
    if len(loc) == 1:
        # The secret keys are top-level keys too, kept out of the models (config.secrets).
        known += sorted(secret_config.SECRET_KEYS)
    typed = str(loc[-1]) if loc else ""
    lowered = {key.lower(): key for key in known}
    near = difflib.get_close_matches(typed.lower(), list(lowered), n=1, cutoff=0.6)
    if near:
        return f"unknown key: did you mean {lowered[near[0]]}? Otherwise remove it", lowered[
            near[0]
        ]
    listed = f" (known here: {', '.join(known)})" if known else ""
    return f"unknown key; remove it{listed}", None


def _example(loc: Sequence[int | str]) -> str | None:
    """The example a field's description gives (`e.g. v1.33.13+k3s2`), if any."""
    model, field = _field_at(loc)
    if model is None or field is None:
        return None
    found = re.search(r"e\.g\. ([^\s;,]+)", model.model_fields[field].description or "")
    return found.group(1).rstrip(".)") if found else None


def _instead(item: Mapping[str, Any], loc: Sequence[int | str], value: object) -> str:
    """What to write, for pydantic's type errors: its own words say what the input is not."""
    key = str(next((part for part in reversed(loc) if isinstance(part, str)), ""))
    kind = str(item["type"])
    ctx = cast(Mapping[str, Any], item.get("ctx") or {})
    if kind == "string_type":
        example = _example(loc) or (str(value) if value is not _MISSING else "...")
        return (
            f"text: write it in quotes, e.g. {key}: {json.dumps(example)} (YAML reads an "
            "unquoted 1.33 or true as a number or a boolean)"
        )
    if kind in ("list_type", "tuple_type", "set_type"):
        item_text = json.dumps(value if value is not _MISSING else "...", default=str)
        return f"a list, even of one item: {key}: [{item_text}] (or one '- item' line each)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"a mapping of keys, one 'name: value' line each, indented under {key}:"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "a whole number without quotes, e.g. 3"
    if kind in ("bool_type", "bool_parsing"):
        return "true or false, without quotes"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next((ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx), "")
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        return f"a number {words[kind]} {bound}"
    if kind == "too_short":
        return f"at least {ctx.get('min_length', 1)} item(s)"
    if kind == "too_long":
        return f"at most {ctx.get('max_length', '')} item(s)"
    return str(item["msg"]).removeprefix("Value error, ")


def _problems(
    err: ValidationError, raw: Mapping[str, Any], secret_keys: frozenset[str]
) -> list[Problem]:
    problems: list[Problem] = []
    # Required keys an unknown key is a typo of: the typo's own line says so, not "required".
    meant: set[str] = set()
    for item in err.errors(include_url=False):
        loc = _as_typed([part for part in item["loc"] if part not in ("function-after",)], raw)
        is_name = bool(loc) and loc[-1] == "[key]"
        if is_name:
            # A mapping's key (a pool's name) is what is wrong: its path, and the name typed.
            loc = loc[:-1]
        cause = cast(Mapping[str, object], item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            # A check across an object's keys: report the key it names, not the whole object.
            loc = [*loc, to_camel(cause.field)]
        value = _lookup(raw, loc)
        if item["type"] == "missing":
            shown, allowed = "(not set)", "required"
        elif item["type"] == "extra_forbidden":
            # Never the value: an unknown key may be a mistyped secret (`hcloudtoken: <token>`).
            shown, (allowed, typo_of) = "(value not shown)", _unknown_key(loc, value)
            if typo_of is not None:
                meant.add(_path([*loc[:-1], typo_of]))
        elif is_name:
            shown, allowed = _show(loc[-1]), _instead(item, loc, value)
        else:
            shown = "(not set)" if value is _MISSING else _show(value)
            allowed = _instead(item, loc, value)
        if "PRIVATE KEY" in shown or (loc and str(loc[0]) in secret_keys):
            # An error message must never carry a secret into logs or PR comments, not even
            # where a validator's text quotes the value or a part of it.
            shown = "[redacted]"
            allowed = _scrub(allowed, _leaves(raw.get(str(loc[0]))) if loc else [])
        problems.append(Problem(_path(loc), shown, allowed))
    return [p for p in problems if not (p.path in meant and p.allowed == "required")]


def _encrypted(value: object, loc: list[int | str]) -> list[list[int | str]]:
    """Where `value` holds a stack file's `secure:` object (an encrypted value, as read from
    the file). Pulumi decrypts these before the program reads its config, so only a reader of
    the file itself, the offline plan, ever sees one."""
    if isinstance(value, Mapping):
        mapping = cast(Mapping[str, object], value)
        if set(mapping) == {"secure"} and isinstance(mapping["secure"], str):
            return [loc]
        return [p for key, item in mapping.items() for p in _encrypted(item, [*loc, key])]
    if isinstance(value, list):
        items = cast(list[object], value)
        return [p for index, item in enumerate(items) for p in _encrypted(item, [*loc, index])]
    return []


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in prefixes)


Check = Callable[["StackConfig"], list[Problem]]


def _no_checks(_cfg: StackConfig) -> list[Problem]:
    return []


def parse_config(
    raw: Mapping[str, Any],
    stack: str = "",
    secret_keys: frozenset[str] = frozenset(),
    check: Check = _no_checks,
    required_secrets: bool = False,
) -> StackConfig:
    """Validate the raw `sovereign:*` objects (keys without the namespace) as one stack.

    Pure: tests and the offline plan call it with a dict; `load_config` with Pulumi's config.
    `check` judges a well-formed config across its keys (`checks.preflight`); it is passed in
    because the checks sit in a layer above the models. `required_secrets`: refuse a missing
    secret the program needs (`load_config`, i.e. preview and up); the offline plan reads no
    secrets and leaves them out.
    """
    # Refused before the models see them: a secret the models parsed would be a plain string.
    problems = secret_config.secret_problems(frozenset(raw), secret_keys)
    plain = {key: value for key, value in raw.items() if key not in secret_config.SECRET_KEYS}
    cfg: StackConfig | None = None
    try:
        cfg = StackConfig.model_validate(plain, by_alias=True, by_name=False)
    except ValidationError as err:
        problems += _problems(err, raw, secret_keys)
    encrypted = [
        _path(loc)
        for key, value in plain.items()
        if key not in secret_keys
        for loc in _encrypted(value, [key])
    ]
    if encrypted:
        # What the models say about an encrypted value ("not set: required" for every key
        # inside it) is about ciphertext, not about the user's config: say what it is instead.
        problems = [p for p in problems if not _under(p.path, encrypted)] + [
            Problem(
                path,
                "(encrypted: a secure: value)",
                "an encrypted value; the offline plan reads no secrets (no passphrase, no state "
                "backend), so it cannot check this key or the keys inside it. Keep non-secret "
                "settings as plain values, or check the stack with `./sovereign preview`",
            )
            for path in encrypted
        ]
    if cfg is not None:
        # A well-formed config is judged across its keys too, so one error lists everything.
        problems += [
            *backup_credential_problems(raw, cfg.backups.enabled),
            *_registry_password_problems(raw, cfg.registry_mirror.username),
            *(_hcloud_token_problems(raw) if required_secrets else []),
            *check(cfg),
        ]
    if problems or cfg is None:
        raise SovereignConfigError(_redacted(problems, raw, secret_keys), stack)
    return cfg


def _redacted(
    problems: Sequence[Problem], raw: Mapping[str, Any], secret_keys: frozenset[str]
) -> list[Problem]:
    """No value of a key the user marked secret in any message, whichever check wrote it."""
    secrets = [text for key in secret_keys for text in _leaves(raw.get(key))]
    if not secrets:
        return list(problems)
    redacted: list[Problem] = []
    for problem in problems:
        top = re.split(r"[.\[ ]", problem.path.removeprefix(f"{NAMESPACE}:"), maxsplit=1)[0]
        value = "[redacted]" if top in secret_keys else _scrub(problem.value, secrets)
        redacted.append(Problem(problem.path, value, _scrub(problem.allowed, secrets)))
    return redacted


def _raw_from_pulumi() -> tuple[dict[str, Any], frozenset[str]]:
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    secret = frozenset(
        k.removeprefix(prefix)
        for k in keys
        if k.startswith(prefix) and runtime_config.is_config_secret(k)
    )
    for full_key in sorted(k for k in keys if k.startswith(prefix)):
        text = runtime_config.get_config(full_key)
        try:
            raw[full_key.removeprefix(prefix)] = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            raw[full_key.removeprefix(prefix)] = text
    return raw, secret


def _registry_password_problems(raw: Mapping[str, Any], username: str | None) -> list[Problem]:
    """A mirror login needs its password (config.secrets refuses it in plain text)."""
    if username is None or REGISTRY_PASSWORD_KEY in raw:
        return []
    return [
        Problem(
            f"{NAMESPACE}:{REGISTRY_PASSWORD_KEY}",
            "(not set)",
            # The username is not echoed: it may sit in a key the user marked secret.
            "required with sovereign:registryMirror.username: "
            f"pulumi config set --secret {NAMESPACE}:{REGISTRY_PASSWORD_KEY} <password>",
        )
    ]


def _hcloud_token_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """The cluster's controllers need their Hetzner token (config.secrets keeps it secret)."""
    if HCLOUD_TOKEN_KEY in raw:
        return []
    return [
        Problem(
            f"{NAMESPACE}:{HCLOUD_TOKEN_KEY}",
            "(not set)",
            "required: the Hetzner API token the cluster's cloud controller manager and CSI "
            "driver use (kube-system Secret `hcloud`), a read/write token of this region's "
            f"project: pulumi config set --secret {NAMESPACE}:{HCLOUD_TOKEN_KEY} <token>",
        )
    ]


def hcloud_token() -> pulumi.Output[str]:
    """The cluster's Hetzner token as a secret Output (`load_config` refused a missing one)."""
    token = secret_config.secret_value(HCLOUD_TOKEN_KEY)
    if token is None:
        raise SovereignConfigError(_hcloud_token_problems({}), pulumi.get_stack())
    return token


def registry_mirror_password() -> pulumi.Output[str] | None:
    """The mirror's password as a secret Output (None without one)."""
    return secret_config.secret_value(REGISTRY_PASSWORD_KEY)


def load_config(check: Check = _no_checks) -> StackConfig:
    """Read and validate this stack's configuration, or raise one `SovereignConfigError`."""
    raw, secret_keys = _raw_from_pulumi()
    return parse_config(raw, pulumi.get_stack(), secret_keys, check, required_secrets=True)
