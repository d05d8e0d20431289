"""What each consumer of a config value accepts: Hetzner, k3s, containerd, Helm, label values.

Each validator takes a string and returns it, or raises `ValueError` with what is allowed. The
messages never repeat the value: the config error shows it next to the key path (or hides it when
the key is secret), and a library's own text would echo it where no redaction reaches.

The facts (patterns, sizes, ranges) live in grammar.yaml beside this module with their sources.
Only the standard library and PyYAML (a dependency of the Pulumi SDK itself), so the policy pack
can import it in its own virtualenv; wrap these in pydantic types where they are used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, cast

import yaml

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FACTS: Final[Mapping[str, Any]] = cast(
    Mapping[str, Any], yaml.safe_load((Path(__file__).with_name("grammar.yaml")).read_text())
)


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(str(FACTS[name]["pattern"]))


def _networks(texts: Iterable[str]) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.IPv4Network(text) for text in texts)


LABEL_VALUE: Final = _pattern("labelValue")
LABEL_VALUE_MAX: Final[int] = int(FACTS["labelValue"]["maxLength"])
OCI_TAG: Final = _pattern("ociTag")
OCI_DIGEST: Final = _pattern("ociDigest")
OCI_REPOSITORY: Final = _pattern("ociRepository")
REGISTRY_HOST: Final = _pattern("registryHost")
CHART_VERSION: Final = _pattern("chartVersion")
GATEWAY_API_RELEASE: Final = _pattern("gatewayApiRelease")

_HETZNER: Final[Mapping[str, Any]] = FACTS["hetznerNetwork"]
HETZNER_PRIVATE: Final = _networks(_HETZNER["privateRanges"])
HETZNER_NETWORK_MAX_PREFIX: Final[int] = int(_HETZNER["networkMaxPrefix"])
HETZNER_SUBNET_MAX_PREFIX: Final[int] = int(_HETZNER["subnetMaxPrefix"])

_CLUSTER: Final[Mapping[str, Any]] = FACTS["clusterRanges"]
CLUSTER_PRIVATE: Final = _networks(_CLUSTER["privateRanges"])
SERVICE_MIN_PREFIX: Final[int] = int(_CLUSTER["serviceMinPrefix"])
SERVICE_MAX_PREFIX: Final[int] = int(_CLUSTER["serviceMaxPrefix"])
CLUSTER_DNS_INDEX: Final[int] = int(_CLUSTER["clusterDnsIndex"])
NODE_MASK_SIZE: Final[int] = int(_CLUSTER["nodeMaskSize"])


def label_value(value: str) -> str:
    """A Hetzner and Kubernetes label value: at most 63, alphanumeric ends, `-_.` inside."""
    if len(value) > LABEL_VALUE_MAX or not LABEL_VALUE.fullmatch(value):
        raise ValueError(
            f"a label value for Hetzner and Kubernetes: at most {LABEL_VALUE_MAX} characters, "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def _private_ipv4(value: str, ranges: tuple[ipaddress.IPv4Network, ...], what: str) -> str:
    network = ipaddress.ip_network(value)
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"an IPv4 range: {what} is IPv4 only, e.g. 10.0.0.0/16")
    if not any(network.subnet_of(allowed) for allowed in ranges):
        listed = ", ".join(str(r) for r in ranges)
        raise ValueError(f"a private range inside one of {listed} ({what})")
    return value


def _hetzner_range(value: str, what: str, max_prefix: int, example: str) -> str:
    _private_ipv4(value, HETZNER_PRIVATE, f"Hetzner {what}s take RFC 1918 IPv4 ranges only")
    if ipaddress.ip_network(value).prefixlen > max_prefix:
        raise ValueError(
            f"a /{max_prefix} or larger: Hetzner's minimum {what} size, e.g. {example}"
        )
    return value


def hetzner_network(value: str) -> str:
    """A Hetzner network's ip_range: RFC 1918 IPv4, /24 or larger."""
    return _hetzner_range(value, "network", HETZNER_NETWORK_MAX_PREFIX, "10.0.0.0/16")


def hetzner_address(value: str) -> str:
    """An address in a Hetzner private network: IPv4 inside RFC 1918."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError("an IPv4 address, e.g. 10.0.1.2") from None
    if not any(address in allowed for allowed in HETZNER_PRIVATE):
        listed = ", ".join(str(r) for r in HETZNER_PRIVATE)
        raise ValueError(
            f"a private address inside one of {listed} (Hetzner networks take RFC 1918 only)"
        )
    return value


def hetzner_subnet(value: str) -> str:
    """A Hetzner cloud subnet's ip_range: RFC 1918 IPv4, /30 or larger."""
    return _hetzner_range(value, "subnet", HETZNER_SUBNET_MAX_PREFIX, "10.0.1.0/24")


_CLUSTER_WHAT: Final = (
    "k3s runs single-stack on the servers' private IPv4 addresses; a public range would hide "
    "those internet addresses from every pod"
)


def pod_range(value: str) -> str:
    """k3s `cluster-cidr`: private IPv4, at least one per-node /24."""
    _private_ipv4(value, CLUSTER_PRIVATE, _CLUSTER_WHAT)
    if ipaddress.ip_network(value).prefixlen > NODE_MASK_SIZE:
        raise ValueError(
            f"a /{NODE_MASK_SIZE} or larger: every node takes a /{NODE_MASK_SIZE} of the pod "
            "range (kube-controller-manager --node-cidr-mask-size), e.g. 10.42.0.0/16"
        )
    return value


def service_range(value: str) -> str:
    """k3s `service-cidr`: private IPv4, between /12 and /28."""
    _private_ipv4(value, CLUSTER_PRIVATE, _CLUSTER_WHAT)
    prefix = ipaddress.ip_network(value).prefixlen
    if prefix < SERVICE_MIN_PREFIX:
        raise ValueError(
            f"a /{SERVICE_MIN_PREFIX} or smaller: kube-apiserver refuses a service range with "
            f"more than {32 - SERVICE_MIN_PREFIX} host bits, e.g. 10.96.0.0/16"
        )
    if prefix > SERVICE_MAX_PREFIX:
        raise ValueError(
            f"a /{SERVICE_MAX_PREFIX} or larger: k3s puts cluster DNS on the range's "
            f"{CLUSTER_DNS_INDEX}th address, e.g. 10.96.0.0/16"
        )
    return value


def world_families(networks: Iterable[IPNetwork]) -> list[str]:
    """Which whole address families the union of `networks` covers: '0.0.0.0/0' and/or '::/0'.

    What counts is the set of addresses, not the spelling: 0.0.0.0/1 plus 128.0.0.0/1 is the
    whole IPv4 internet as much as 0.0.0.0/0 is.
    """
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    found: list[str] = []
    if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v4)):
        found.append("0.0.0.0/0")
    if any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(v6)):
        found.append("::/0")
    return found


def registry_host(value: str) -> str:
    """A registry for containerd/k3s registries.yaml: DNS name, optional :port, no scheme."""
    if "://" in value or "/" in value:
        raise ValueError(
            "a registry host name with an optional port, without scheme or path, "
            "e.g. harbor.example.com or harbor.example.com:5000"
        )
    match = REGISTRY_HOST.fullmatch(value)
    port = value.rpartition(":")[2] if ":" in value else ""
    if not match or any(len(label) > 63 for label in value.split(":")[0].split(".")):
        raise ValueError(
            "a registry host name with an optional port: DNS labels of letters, digits and "
            "'-', e.g. harbor.example.com or harbor.example.com:5000"
        )
    if port and not 1 <= int(port) <= 65535:
        raise ValueError("a port between 1 and 65535 after the host name")
    return value


def oci_tag(value: str) -> str:
    if not OCI_TAG.fullmatch(value):
        raise ValueError(
            "an OCI image tag: up to 128 letters, digits, '_', '.' or '-', not starting with "
            "'.' or '-', e.g. 0.20.0"
        )
    return value


def oci_digest(value: str) -> str:
    if not OCI_DIGEST.fullmatch(value):
        raise ValueError("an image digest: sha256: followed by 64 lower-case hex digits")
    return value


def oci_repository(value: str) -> str:
    if len(value) > 255 or not OCI_REPOSITORY.fullmatch(value):
        raise ValueError(
            "an OCI repository path: lower-case letters and digits separated by '.', '_', '__', "
            "'-' or '/', e.g. loft-sh/vcluster"
        )
    return value


def chart_version(value: str) -> str:
    if not CHART_VERSION.fullmatch(value):
        raise ValueError(
            "one exact chart version, MAJOR.MINOR.PATCH such as 1.18.12 or v1.21.1; Helm reads "
            "a partial version or a range ('1.18', '^1.18', '~1.18.0') as a constraint and "
            "installs whatever is newest that day"
        )
    return value


def gateway_api_release(value: str) -> str:
    if not GATEWAY_API_RELEASE.fullmatch(value):
        raise ValueError(
            "a Gateway API release tag vMAJOR.MINOR.PATCH, e.g. v1.4.0 (the CRDs of that "
            "release, vendored in render/upstream/)"
        )
    return value
