"""Would Cilium let this connection through? A small evaluator over the policy objects declared.

It reads Kubernetes NetworkPolicies, CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies
as the provider receives them and answers for one (source, destination, port, protocol), the
way Cilium combines them (docs.cilium.io "Policy Enforcement Modes" and "Layer 3 examples",
first read for Cilium 1.18; the same model stands in the pages' latest version, after 1.19,
the line main pins: docs.cilium.io/en/latest/security/policy/intro/, checked 2026-12-04):

- An endpoint selected by any policy with rules in a direction is default-deny in that
  direction (unless that policy sets `enableDefaultDeny` false for it); what the policies allow
  is their union; a deny rule wins over every allow.
- A connection needs the source's egress and the destination's ingress to allow it. Replies
  are never judged (connection tracking).
- Only pod endpoints carry policies here. The other identities are Cilium's reserved
  entities: `world` (with an address, for CIDR rules), `kube-apiserver`, `host`,
  `remote-node` and `ingress` (Gateway and Ingress traffic from Cilium's envoy).
- Traffic from the local `host` into a pod is always admitted (Cilium's `allow-localhost`
  default): the kubelet's probes. A `remote-node` gets no such pass.
- A Kubernetes `ipBlock` matches only `world` addresses (Cilium never matches cluster
  identities by CIDR by default), and a namespace or pod selector only pods.

Supported: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist), numeric ports
with `endPort`, protocols TCP, UDP and ANY. Named ports and L7 rules are refused, not guessed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

Direction = Literal["ingress", "egress"]
NAMESPACE_LABEL: Final = "io.kubernetes.pod.namespace"
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
CLUSTER_ENTITIES: Final = frozenset({"host", "remote-node", "kube-apiserver", "ingress", "health"})


class UnsupportedPolicyError(ValueError):
    """A policy uses something this evaluator does not model."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A pod (namespace and labels) or one of Cilium's reserved entities."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    entity: str | None = None
    address: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {NAMESPACE_NAME_LABEL: self.namespace} if self.namespace else {}


def pod(name: str, namespace: str, **labels: str) -> Endpoint:
    return Endpoint(name, namespace=namespace, labels=dict(labels))


def entity(name: str, address: str | None = None) -> Endpoint:
    return Endpoint(name, entity=name if name != "metadata" else "world", address=address)


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


def _strip(key: str) -> str:
    # Cilium selectors may name a label's source (`k8s:app`); Kubernetes ones never do.
    return key.split(":", 1)[1] if key.startswith(("k8s:", "any:")) else key


def _check_selector(selector: Mapping[str, Any]) -> Mapping[str, Any]:
    stray = set(selector) - {"matchLabels", "matchExpressions"}
    if stray:
        # Labels written straight into the selector: the API would refuse or ignore them.
        raise UnsupportedPolicyError(f"selector keys {sorted(stray)}: not a label selector")
    return selector


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector against a label set (an empty selector selects all)."""
    _check_selector(selector)
    for key, value in _map(selector.get("matchLabels")).items():
        if labels.get(_strip(key)) != str(value):
            return False
    for expression in _list(selector.get("matchExpressions")):
        expr = _map(expression)
        key, operator = _strip(str(expr.get("key"))), expr.get("operator")
        values = {str(v) for v in _list(expr.get("values"))}
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(str(operator))
        if ok is None:
            raise UnsupportedPolicyError(f"selector operator {operator!r}")
        if not ok:
            return False
    return True


def _port_matches(rule_ports: Iterable[Mapping[str, Any]], port: int, protocol: str) -> bool:
    for item in rule_ports:
        proto = str(item.get("protocol", "TCP"))
        if proto not in ("ANY", protocol):
            continue
        first = item.get("port")
        if first is None:
            return True
        if isinstance(first, str) and not first.isdigit():
            raise UnsupportedPolicyError(f"named port {first!r}")
        low = int(first)
        high = int(item.get("endPort", low))
        if low == 0 or low <= port <= high:
            return True
    return False


def _in_cidrs(peer: Endpoint, cidrs: Iterable[str], excepts: Iterable[str] = ()) -> bool:
    if peer.entity != "world" or peer.address is None:
        return False
    address = ipaddress.ip_address(peer.address)
    inside = any(address in ipaddress.ip_network(c) for c in cidrs)
    return inside and not any(address in ipaddress.ip_network(e) for e in excepts)


PeerMatch = Callable[[Endpoint], bool]
PortMatch = Callable[[int, str], bool]


def _anyone(_peer: Endpoint) -> bool:
    return True


def _any_port(_port: int, _protocol: str) -> bool:
    return True


def _one_of(matchers: Sequence[PeerMatch]) -> PeerMatch:
    def match(peer: Endpoint) -> bool:
        return any(m(peer) for m in matchers)

    return match


def _ports(items: Sequence[Mapping[str, Any]]) -> PortMatch:
    def match(port: int, protocol: str) -> bool:
        return _port_matches(items, port, protocol)

    return match if items else _any_port


def _cidr_match(cidrs: Sequence[str], excepts: Sequence[str] = ()) -> PeerMatch:
    def match(peer: Endpoint) -> bool:
        return _in_cidrs(peer, cidrs, excepts)

    return match


@dataclass(frozen=True, slots=True)
class _Rule:
    """One allow or deny rule, reduced to: does it match this peer and this port?"""

    peer: PeerMatch
    ports: PortMatch


@dataclass(frozen=True, slots=True)
class _Policy:
    selects: PeerMatch
    allow: Mapping[Direction, list[_Rule]]
    deny: Mapping[Direction, list[_Rule]]
    enforces: Mapping[Direction, bool]


# --- Kubernetes NetworkPolicy ---------------------------------------------------------------


def _k8s_peer(namespace: str, peer: Mapping[str, Any]) -> PeerMatch:
    if "ipBlock" in peer:
        block = _map(peer["ipBlock"])
        return _cidr_match([str(block.get("cidr"))], [str(x) for x in _list(block.get("except"))])
    pods = peer.get("podSelector")
    spaces = peer.get("namespaceSelector")
    for selector in (pods, spaces):
        if selector is not None:
            _check_selector(_map(selector))

    def match(e: Endpoint) -> bool:
        if not e.is_pod:
            return False
        if spaces is None:
            in_space = e.namespace == namespace
        else:
            in_space = selects(_map(spaces), e.namespace_labels)
        return in_space and (pods is None or selects(_map(pods), e.labels))

    return match


def _k8s_policy(doc: Mapping[str, Any]) -> _Policy:
    meta, spec = _map(doc.get("metadata")), _map(doc.get("spec"))
    namespace = str(meta.get("namespace", "default"))
    types = [str(t) for t in _list(spec.get("policyTypes"))] or (
        ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
    )
    allow: dict[Direction, list[_Rule]] = {"ingress": [], "egress": []}
    pairs: tuple[tuple[Direction, str], ...] = (("ingress", "from"), ("egress", "to"))
    for direction, peers_key in pairs:
        for raw in _list(spec.get(direction)):
            rule = _map(raw)
            peers = [_k8s_peer(namespace, _map(p)) for p in _list(rule.get(peers_key))]
            ports = [_map(p) for p in _list(rule.get("ports"))]
            allow[direction].append(
                _Rule(peer=_one_of(peers) if peers else _anyone, ports=_ports(ports))
            )
    selector = _map(spec.get("podSelector"))

    def chosen(e: Endpoint) -> bool:
        return e.is_pod and e.namespace == namespace and selects(selector, e.labels)

    return _Policy(
        selects=chosen,
        allow=allow,
        deny={"ingress": [], "egress": []},
        enforces={"ingress": "Ingress" in types, "egress": "Egress" in types},
    )


# --- Cilium policies --------------------------------------------------------------------------


def _cilium_endpoints(namespace: str | None, selector: Mapping[str, Any]) -> PeerMatch:
    _check_selector(selector)
    own = {_strip(str(k)): v for k, v in _map(selector.get("matchLabels")).items()}
    names_namespace = NAMESPACE_LABEL in own or any(
        _strip(str(_map(x).get("key"))) == NAMESPACE_LABEL
        for x in _list(selector.get("matchExpressions"))
    )

    def match(e: Endpoint) -> bool:
        if not e.is_pod:
            return False
        if namespace is not None and not names_namespace and e.namespace != namespace:
            return False
        return selects(selector, {**e.labels, NAMESPACE_LABEL: str(e.namespace)})

    return match


def _cilium_entities(names: Iterable[str]) -> PeerMatch:
    wanted = set(names)

    def match(e: Endpoint) -> bool:
        if "all" in wanted:
            return True
        if e.is_pod:
            return "cluster" in wanted
        return e.entity in wanted or ("cluster" in wanted and e.entity in CLUSTER_ENTITIES)

    return match


def _cilium_rule(namespace: str | None, rule: Mapping[str, Any], direction: Direction) -> _Rule:
    prefix = "from" if direction == "ingress" else "to"
    unsupported = {"toFQDNs", "toServices", "toGroups", "toRequires", "fromRequires", "icmps"}
    if unsupported & set(rule):
        raise UnsupportedPolicyError(f"rule keys {sorted(unsupported & set(rule))}")
    matchers: list[PeerMatch] = []
    if f"{prefix}Endpoints" in rule:
        matchers += [
            _cilium_endpoints(namespace, _map(s)) for s in _list(rule[f"{prefix}Endpoints"])
        ]
    if f"{prefix}Entities" in rule:
        matchers.append(_cilium_entities(str(n) for n in _list(rule[f"{prefix}Entities"])))
    if f"{prefix}CIDR" in rule:
        cidrs = [str(c) for c in _list(rule[f"{prefix}CIDR"])]
        matchers.append(_cidr_match(cidrs))
    if f"{prefix}CIDRSet" in rule:
        for item in _list(rule[f"{prefix}CIDRSet"]):
            block = _map(item)
            cidr, excepts = [str(block.get("cidr"))], [str(x) for x in _list(block.get("except"))]
            matchers.append(_cidr_match(cidr, excepts))
    has_l3 = any(f"{prefix}{k}" in rule for k in ("Endpoints", "Entities", "CIDR", "CIDRSet"))
    ports = [_map(p) for tp in _list(rule.get("toPorts")) for p in _list(_map(tp).get("ports"))]
    if any(_map(tp).get("rules") for tp in _list(rule.get("toPorts"))):
        raise UnsupportedPolicyError("L7 rules")
    # No L3 selector: the rule's ports from anywhere (Cilium's L4-only rule).
    return _Rule(peer=_one_of(matchers) if has_l3 else _anyone, ports=_ports(ports))


def _cilium_policy(doc: Mapping[str, Any]) -> list[_Policy]:
    clusterwide = doc.get("kind") == "CiliumClusterwideNetworkPolicy"
    namespace = None if clusterwide else str(_map(doc.get("metadata")).get("namespace", "default"))
    spec = _map(doc.get("spec"))
    policies: list[_Policy] = []
    for part in (
        [spec, *(_map(s) for s in _list(doc.get("specs")))]
        if spec
        else [_map(s) for s in _list(doc.get("specs"))]
    ):
        if "nodeSelector" in part:
            continue  # host policies select nodes, which carry no pod traffic here
        chosen = _cilium_endpoints(namespace, _map(part.get("endpointSelector")))
        allow: dict[Direction, list[_Rule]] = {"ingress": [], "egress": []}
        deny: dict[Direction, list[_Rule]] = {"ingress": [], "egress": []}
        for direction in ("ingress", "egress"):
            allow[direction] = [
                _cilium_rule(namespace, _map(r), direction) for r in _list(part.get(direction))
            ]
            deny[direction] = [
                _cilium_rule(namespace, _map(r), direction)
                for r in _list(part.get(f"{direction}Deny"))
            ]
        default_deny = _map(part.get("enableDefaultDeny"))
        enforces: dict[Direction, bool] = {
            d: bool((d in part or f"{d}Deny" in part) and default_deny.get(d, True) is not False)
            for d in ("ingress", "egress")
        }
        policies.append(_Policy(chosen, allow, deny, enforces))
    return policies


KINDS: Final = frozenset({"NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"})


def load(objects: Iterable[Mapping[str, Any]]) -> list[_Policy]:
    """Every policy among `objects` (other kinds are skipped)."""
    policies: list[_Policy] = []
    for doc in objects:
        kind = doc.get("kind")
        if kind == "NetworkPolicy":
            policies.append(_k8s_policy(doc))
        elif kind in KINDS:
            policies.extend(_cilium_policy(doc))
    return policies


def _judge(
    policies: Sequence[_Policy],
    endpoint: Endpoint,
    direction: Direction,
    peer: Endpoint,
    port: int,
    protocol: str,
) -> bool:
    if not endpoint.is_pod:
        return True  # entities carry no policy of ours
    if direction == "ingress" and peer.entity == "host":
        return True
    mine = [p for p in policies if p.selects(endpoint)]
    for policy in mine:
        if any(r.peer(peer) and r.ports(port, protocol) for r in policy.deny[direction]):
            return False
    if not any(p.enforces[direction] for p in mine):
        return True
    return any(r.peer(peer) and r.ports(port, protocol) for p in mine for r in p.allow[direction])


def allowed(
    policies: Sequence[_Policy],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether a new connection from `source` to `destination` on `port` gets through."""
    return _judge(policies, source, "egress", destination, port, protocol) and _judge(
        policies, destination, "ingress", source, port, protocol
    )
