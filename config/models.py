"""Stack configuration: the only reader of `pulumi.Config`.

Every `sovereign:*` object is validated into frozen pydantic models before the first resource is
declared, and every invalid key is reported at once by the path the user typed
(`sovereign:controlPlane.count`), with the value given and what is allowed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, cast

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from config.errors import Problem, SovereignConfigError
from config.pss import VERSION_PATTERN
from config.pss import Level as PssLevel

NAMESPACE: Final = "sovereign"

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

# Pod CIDR 10.(42+index).0.0/16 must stay below the service range 10.96.0.0/16 of index 0.
MAX_REGION_INDEX: Final = 53

_WORLD: Final = frozenset({"0.0.0.0/0", "::/0"})
_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$"
)
_FQDN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as err:
        raise ValueError(f"a CIDR with no host bits set, e.g. 10.0.0.0/16 ({err})") from None


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("an IPv4 address, e.g. 10.0.1.2") from None


def _not_world(value: str) -> str:
    if value in _WORLD:
        raise ValueError(
            "SSH open to the whole internet is refused; list the deployer's and operators' "
            "addresses instead, e.g. 203.0.113.7/32"
        )
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
SshCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_not_world)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


class Region(_Model):
    """Which region of the Sovereign this stack is."""

    role: Role = Field(description="primary (MGMT + DMZ) or secondary (DMZ + RTZ), DoD A4.")
    key: str = Field(description="Region key, the location plus an optional ordinal: fsn1, hel1-2.")
    location: Location = Field(description="Hetzner location of every server of the region.")
    index: int = Field(ge=0, le=MAX_REGION_INDEX, description="0 for the primary; drives CIDRs.")
    fqdn: str = Field(description="The Sovereign's domain, e.g. omantel.openova.io.")

    @field_validator("key")
    @classmethod
    def _key_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{3}[0-9](-[0-9]{1,2})?", value):
            raise ValueError("a location code with an optional ordinal, e.g. fsn1 or hel1-2")
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
            raise ValueError(
                f"key {self.key!r} must start with its location {self.location!r} "
                f"(e.g. {self.location} or {self.location}-2), so the key names where the "
                "servers are"
            )
        if self.role == "primary" and self.index != 0:
            raise ValueError(f"index {self.index}: the primary region has index 0")
        if self.role == "secondary" and self.index == 0:
            raise ValueError("index 0 is the primary's; a secondary takes 1 or more")
        return self


class ControlPlane(_Model):
    """The k3s server nodes of this region."""

    server_type: str = Field(
        default="cpx31", description="Hetzner server type: cx/cpx/ccx/cax + digits."
    )
    count: int = Field(default=1, description="1, or 3 for HA with embedded etcd.")
    image: str = Field(default="ubuntu-24.04", description="Hetzner image name.")
    k3s_version: str = Field(
        alias="k3sVersion", description="Pinned k3s release, e.g. v1.31.4+k3s1."
    )
    protect: bool = Field(default=True, description="Pulumi `protect` on control-plane servers.")
    allow_replacement: bool = Field(
        default=False,
        description="Opt in to replacing servers on user_data or image changes, one at a time.",
    )

    @field_validator("server_type")
    @classmethod
    def _server_type(cls, value: str) -> str:
        if not re.fullmatch(r"(cx|cpx|ccx|cax)[0-9]{2,3}", value):
            raise ValueError(
                "a Hetzner server type: cx, cpx, ccx or cax followed by digits, e.g. cpx31"
            )
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
        if not re.fullmatch(r"v1\.[0-9]+\.[0-9]+\+k3s[0-9]+", value):
            raise ValueError(
                "an exact k3s release, e.g. v1.31.4+k3s1 (channels and 'latest' are not pins)"
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


class Access(_Model):
    """Who can reach the servers."""

    ssh_public_keys: list[Annotated[str, AfterValidator(_ssh_public_key)]] = Field(
        min_length=1,
        max_length=20,
        description="Operator SSH public keys installed on every server.",
    )
    ssh_allowed_cidrs: list[SshCidr] = Field(
        default_factory=list[str],
        max_length=20,
        description="Sources allowed to TCP 22; must include the deployer (kubeconfig over SSH).",
    )
    api_allowed_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0", "::/0"],
        min_length=1,
        max_length=20,
        description="Sources allowed to the Kubernetes API, TCP 6443.",
    )

    @field_validator("ssh_allowed_cidrs")
    @classmethod
    def _deployer_reachable(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "empty, but `pulumi up` reads the kubeconfig over SSH from the first control-plane "
                'server; add the deployer\'s address, e.g. ["203.0.113.7/32"]'
            )
        return value


class Network(_Model):
    """Hetzner private network and the cluster's per-region CIDRs."""

    cidr: Cidr = Field(default="10.0.0.0/16", description="Hetzner private network.")
    subnet_cidr: Cidr = Field(default="10.0.1.0/24", description="Cloud subnet of the servers.")
    first_control_plane_ip: IPv4 = Field(
        default="10.0.1.2", description="Private IP of CP 1; the others follow."
    )
    pod_cidr: Cidr | None = Field(default=None, description="Default 10.(42+index).0.0/16.")
    service_cidr: Cidr | None = Field(default=None, description="Default 10.(96+index).0.0/16.")


class LoadBalancer(_Model):
    """Optional Hetzner load balancer in front of Cilium's Gateway node ports."""

    enabled: bool = Field(default=False, description="Create a Hetzner load balancer for 80/443.")
    type: Literal["lb11", "lb21", "lb31"] = Field(default="lb11", description="Hetzner LB type.")
    private_ip: IPv4 = Field(default="10.0.1.254", description="Pinned private IP in the subnet.")
    http_node_port: int = Field(
        default=30080, ge=30000, le=32767, description="Gateway node port for 80."
    )
    https_node_port: int = Field(
        default=30443, ge=30000, le=32767, description="Gateway node port for 443."
    )


# Every registry the pinned charts pull from (their rendered images: tests/test_render_checks.py
# keeps this in step), each through its own proxy project on the mirror host.
DEFAULT_MIRROR_PROJECTS: Final[Mapping[str, str]] = {
    "docker.io": "proxy-dockerhub",
    "ghcr.io": "proxy-ghcr",
    "quay.io": "proxy-quay",
    "registry.k8s.io": "proxy-k8s",
}
# The mirror's password is its own secret config key, never part of the structured object:
# `pulumi config set --secret sovereign:registryMirrorPassword ...`.
REGISTRY_PASSWORD_KEY: Final = "registryMirrorPassword"


class RegistryMirror(_Model):
    """Opt-in containerd mirror through an image proxy (k3s registries.yaml)."""

    enabled: bool = Field(
        default=False,
        description="Pull every image through the proxy (/etc/rancher/k3s/registries.yaml); "
        "off: each image comes from its upstream registry without credentials.",
    )
    host: str = Field(default="harbor.openova.io", description="Proxy registry host.")
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


class GatewayApi(_Model):
    enabled: bool = Field(default=False, description="Cilium Gateway API; applies its CRDs first.")
    crds_version: str = Field(
        default="v1.3.0", description="Gateway API CRDs the Cilium line expects."
    )


class Cilium(_Model):
    version: str = Field(default="1.18.12", description="Pinned Cilium chart version.")
    wireguard: bool = Field(default=True, description="Transparent WireGuard encryption.")
    gateway_api: GatewayApi = Field(default_factory=GatewayApi, description="Gateway API.")


class CertManager(_Model):
    version: str = Field(default="v1.21.1", description="Pinned cert-manager chart version.")


class PodSecurity(_Model):
    """Pod Security Standard labels of a vCluster namespace."""

    enforce: PssLevel = Field(default="baseline", description="Level PodSecurity enforces.")
    audit: PssLevel = Field(default="restricted", description="Level recorded in the audit log.")
    warn: PssLevel = Field(default="restricted", description="Level warned about to clients.")
    version: str = Field(default="latest", description="`latest` or `v1.NN`.")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_PATTERN.fullmatch(value):
            raise ValueError("`latest` or a Kubernetes minor version such as v1.31")
        return value


class Image(_Model):
    # v0.20.0 publishes one build as ghcr.io/loft-sh/vcluster and .../vcluster-oss (its
    # .goreleaser.yaml); the chart's default loft-sh/vcluster-pro is built outside the open
    # source repository. render/vcluster_image.yaml keeps the facts and their sources.
    registry: str = Field(default="ghcr.io", description="Registry (upstream, public).")
    repository: str = Field(default="loft-sh/vcluster-oss", description="Repository.")
    tag: str = Field(default="0.20.0", description="Pinned tag.")
    digest: str | None = Field(default=None, description="Optional sha256 digest pin.")

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not value.strip() or value == "latest":
            raise ValueError("pinned image required: an exact tag such as 0.20.0")
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
            raise ValueError("sha256: followed by 64 hex digits")
        return value


class VClusterSecurity(_Model):
    """Security contexts passed to the chart (`controlPlane.statefulSet.security`, distro)."""

    pod_security_context: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="Pod level."
    )
    container_security_context: dict[str, Any] | None = Field(
        default=None, description="Syncer container; unset keeps the chart default."
    )
    distro_security_context: dict[str, Any] = Field(
        default_factory=dict[str, Any], description="k8s distro init containers."
    )


class VCluster(_Model):
    enabled: bool | None = Field(
        default=None, description="Unset: on where the region's role runs it (A4)."
    )
    pod_security: PodSecurity = Field(default_factory=PodSecurity, description="PSS labels.")
    image: Image = Field(default_factory=Image, description="Syncer image.")
    telemetry: bool = Field(
        default=False,
        description="Send vCluster usage telemetry to loft.sh (the chart's default is on).",
    )
    security: VClusterSecurity = Field(
        default_factory=VClusterSecurity, description="Security contexts."
    )


class Releases(_Model):
    """How long each Helm release may take to become ready before `pulumi up` fails."""

    timeout_seconds: int = Field(default=600, ge=60, le=3600, description="Helm wait per release.")


class VClusters(_Model):
    mgmt: VCluster = Field(default_factory=VCluster, description="MGMT vCluster (slot 58).")
    dmz: VCluster = Field(default_factory=VCluster, description="DMZ vCluster (slot 54).")
    rtz: VCluster = Field(default_factory=VCluster, description="RTZ vCluster (slot 59).")

    def spec(self, name: VClusterName) -> VCluster:
        return {"mgmt": self.mgmt, "dmz": self.dmz, "rtz": self.rtz}[name]


class StackConfig(_Model):
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

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,19}", value):
            raise ValueError("2-20 lower-case letters, digits or '-', starting with a letter")
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


def _problems(
    err: ValidationError, raw: Mapping[str, Any], secret_keys: frozenset[str]
) -> list[Problem]:
    problems: list[Problem] = []
    for item in err.errors(include_url=False):
        loc = [part for part in item["loc"] if part not in ("function-after",)]
        value = _lookup(raw, loc)
        if item["type"] == "missing":
            shown, allowed = "(not set)", "required"
        elif item["type"] == "extra_forbidden":
            shown, allowed = _show(value), "unknown key (a typo?); remove it"
        else:
            shown = "(not set)" if value is _MISSING else _show(value)
            allowed = str(item["msg"]).removeprefix("Value error, ")
        if "PRIVATE KEY" in shown or (loc and str(loc[0]) in secret_keys):
            # An error message must never carry a secret into logs or PR comments.
            shown = "[redacted]"
        problems.append(Problem(_path(loc), shown, allowed))
    return problems


Check = Callable[["StackConfig"], list[Problem]]


def _no_checks(_cfg: StackConfig) -> list[Problem]:
    return []


def parse_config(
    raw: Mapping[str, Any],
    stack: str = "",
    secret_keys: frozenset[str] = frozenset(),
    check: Check = _no_checks,
) -> StackConfig:
    """Validate the raw `sovereign:*` objects (keys without the namespace) as one stack.

    Pure: tests and the offline plan call it with a dict; `load_config` with Pulumi's config.
    `check` judges a well-formed config across its keys (`checks.preflight`); it is passed in
    because the checks sit in a layer above the models.
    """
    try:
        cfg = StackConfig.model_validate(dict(raw), by_alias=True, by_name=False)
    except ValidationError as err:
        raise SovereignConfigError(_problems(err, raw, secret_keys), stack) from None
    problems = check(cfg)
    if problems:
        raise SovereignConfigError(problems, stack)
    return cfg


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
        if full_key == f"{prefix}{REGISTRY_PASSWORD_KEY}":
            continue  # a secret Output, never a model value: `registry_mirror_password()`
        text = runtime_config.get_config(full_key)
        try:
            raw[full_key.removeprefix(prefix)] = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            raw[full_key.removeprefix(prefix)] = text
    return raw, secret


def _password_problems(cfg: StackConfig) -> list[Problem]:
    full_key = f"{NAMESPACE}:{REGISTRY_PASSWORD_KEY}"
    present = runtime_config.get_config(full_key) is not None
    path = f"{NAMESPACE}:{REGISTRY_PASSWORD_KEY}"
    if present and not runtime_config.is_config_secret(full_key):
        return [
            Problem(
                path,
                "[redacted]",
                "a secret: pulumi config set --secret "
                f"{full_key} <password> (a plain value would sit in the stack file and state)",
            )
        ]
    if cfg.registry_mirror.username is not None and not present:
        return [
            Problem(
                path,
                "(not set)",
                f"required with sovereign:registryMirror.username "
                f"{cfg.registry_mirror.username!r}: "
                f"pulumi config set --secret {full_key} <password>",
            )
        ]
    return []


def registry_mirror_password() -> pulumi.Output[str] | None:
    """The mirror's password as a secret Output (None without one)."""
    return pulumi.Config(NAMESPACE).get_secret(REGISTRY_PASSWORD_KEY)


def load_config(check: Check = _no_checks) -> StackConfig:
    """Read and validate this stack's configuration, or raise one `SovereignConfigError`."""
    raw, secret_keys = _raw_from_pulumi()

    def checks(cfg: StackConfig) -> list[Problem]:
        return [*check(cfg), *_password_problems(cfg)]

    return parse_config(raw, pulumi.get_stack(), secret_keys, checks)
