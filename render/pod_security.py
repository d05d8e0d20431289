"""A small Pod Security Standards evaluator: what PodSecurity admission would say about a pod.

It implements the `baseline` and `restricted` checks of the Kubernetes Pod Security
Standards over the pod and container security contexts, with the check names, ordering and
wording of the PodSecurity admission plugin, so a refusal read at preview looks like the one
the StatefulSet controller would have logged.

`vcluster_pod_spec` builds the pod the loft-sh vcluster 0.20.0 chart creates (k8s distro) from
release values merged over the chart's defaults. The module is stdlib only: the policy pack
(`policy/`) imports it in its own virtualenv.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from config.pss import LABEL_PREFIX, MODES, VERSION_PATTERN, Level

# Capabilities a baseline pod may add (the container runtime's defaults).
BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
SELINUX_TYPES: Final = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUME_TYPES: Final = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Every other key of a volume names its source (`hostPath`, `nfs`, ...).
_VOLUME_META: Final = frozenset({"name"})
# Safe sysctls by the minor version that first allowed them.
SAFE_SYSCTLS: Final[Mapping[str, int]] = {
    "kernel.shm_rmid_forced": 0,
    "net.ipv4.ip_local_port_range": 0,
    "net.ipv4.tcp_syncookies": 0,
    "net.ipv4.ping_group_range": 0,
    "net.ipv4.ip_unprivileged_port_start": 0,
    "net.ipv4.ip_local_reserved_ports": 27,
    "net.ipv4.tcp_keepalive_time": 29,
    "net.ipv4.tcp_fin_timeout": 29,
    "net.ipv4.tcp_keepalive_intvl": 29,
    "net.ipv4.tcp_keepalive_probes": 29,
}
LATEST_MINOR: Final = 1_000

PodSpec = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: PodSecurity's reason and its parenthesised detail."""

    check: str
    detail: str


def _minor(version: str) -> int:
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"Pod Security version {version!r}: `latest` or `v1.NN`")
    return LATEST_MINOR if version == "latest" else int(version.split(".")[1])


def _map(value: object) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class _Container:
    name: str
    ctx: Mapping[str, Any]
    spec: Mapping[str, Any]


def _containers(pod: PodSpec) -> list[_Container]:
    # PodSecurity names init containers first, then containers, then ephemeral containers.
    found: list[_Container] = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for item in _list(pod.get(key)):
            spec = _map(item)
            found.append(
                _Container(str(spec.get("name", "")), _map(spec.get("securityContext")), spec)
            )
    return found


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _who(names: Sequence[str]) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_quoted(names)}"


def _must_not_add(container: str, capabilities: Sequence[str]) -> str:
    return (
        f'container "{container}" must not include {_quoted(capabilities)} '
        "in securityContext.capabilities.add"
    )


def _pod_ctx(pod: PodSpec) -> Mapping[str, Any]:
    return _map(pod.get("securityContext"))


def _pod_and_containers(
    pod: PodSpec, wrong: Callable[[Mapping[str, Any]], bool], says: str
) -> list[str]:
    """`says` about the pod's own security context and about each container's that is `wrong`."""
    bad = [f"pod {says}"] if wrong(_pod_ctx(pod)) else []
    names = [c.name for c in _containers(pod) if wrong(c.ctx)]
    if names:
        bad.append(f"{_who(names)} {says}")
    return bad


# --- baseline -------------------------------------------------------------------------


def _app_armor(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad = _pod_and_containers(
        pod,
        lambda ctx: _map(ctx.get("appArmorProfile")).get("type") == "Unconfined",
        'must not set securityContext.appArmorProfile.type to "Unconfined"',
    )
    return Violation("forbidden AppArmor profile", "; ".join(bad)) if bad else None


def _capabilities_baseline(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad: list[str] = []
    for c in _containers(pod):
        added = [str(a) for a in _list(_map(c.ctx.get("capabilities")).get("add"))]
        forbidden = [a for a in added if a not in BASELINE_CAPABILITIES]
        if forbidden:
            bad.append(_must_not_add(c.name, forbidden))
    return Violation("non-default capabilities", "; ".join(bad)) if bad else None


def _host_namespaces(pod: PodSpec, _minor_version: int) -> Violation | None:
    on = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key) is True]
    return Violation("host namespaces", ", ".join(on)) if on else None


def _volume_names(pod: PodSpec, kind: str) -> list[str]:
    return [str(_map(v).get("name", "")) for v in _list(pod.get("volumes")) if kind in _map(v)]


def _host_path_volumes(pod: PodSpec, _minor_version: int) -> Violation | None:
    names = _volume_names(pod, "hostPath")
    if not names:
        return None
    return Violation(
        "hostPath volumes", f"{'volume' if len(names) == 1 else 'volumes'} {_quoted(names)}"
    )


def _host_ports(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad: list[str] = []
    for c in _containers(pod):
        ports = [
            str(_map(p).get("hostPort"))
            for p in _list(c.spec.get("ports"))
            if _map(p).get("hostPort")
        ]
        if ports:
            noun = "hostPort" if len(ports) == 1 else "hostPorts"
            bad.append(f'container "{c.name}" uses {noun} {", ".join(ports)}')
    return Violation("hostPort", "; ".join(bad)) if bad else None


def _host_process(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad = _pod_and_containers(
        pod,
        lambda ctx: _map(ctx.get("windowsOptions")).get("hostProcess") is True,
        "must not set securityContext.windowsOptions.hostProcess=true",
    )
    return Violation("hostProcess", "; ".join(bad)) if bad else None


def _privileged(pod: PodSpec, _minor_version: int) -> Violation | None:
    names = [c.name for c in _containers(pod) if c.ctx.get("privileged") is True]
    if not names:
        return None
    return Violation("privileged", f"{_who(names)} must not set securityContext.privileged=true")


def _proc_mount(pod: PodSpec, _minor_version: int) -> Violation | None:
    names = [c.name for c in _containers(pod) if c.ctx.get("procMount") not in (None, "Default")]
    if not names:
        return None
    return Violation(
        "procMount", f'{_who(names)} must not set securityContext.procMount to "Unmasked"'
    )


def _se_linux_forbidden(ctx: Mapping[str, Any]) -> bool:
    opts = _map(ctx.get("seLinuxOptions"))
    return (
        opts.get("type", "") not in SELINUX_TYPES
        or opts.get("user", "") != ""
        or opts.get("role", "") != ""
    )


def _se_linux(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad = _pod_and_containers(
        pod, _se_linux_forbidden, "set forbidden securityContext.seLinuxOptions"
    )
    return Violation("seLinuxOptions", "; ".join(bad)) if bad else None


def _seccomp_type(ctx: Mapping[str, Any]) -> object:
    return _map(ctx.get("seccompProfile")).get("type")


def _seccomp_baseline(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad = _pod_and_containers(
        pod,
        lambda ctx: _seccomp_type(ctx) == "Unconfined",
        'must not set securityContext.seccompProfile.type to "Unconfined"',
    )
    return Violation("seccompProfile", "; ".join(bad)) if bad else None


def _sysctls(pod: PodSpec, minor_version: int) -> Violation | None:
    names = [str(_map(s).get("name", "")) for s in _list(_pod_ctx(pod).get("sysctls"))]
    forbidden = [n for n in names if SAFE_SYSCTLS.get(n, LATEST_MINOR + 1) > minor_version]
    return Violation("forbidden sysctls", ", ".join(forbidden)) if forbidden else None


# --- restricted -----------------------------------------------------------------------


def _allow_privilege_escalation(pod: PodSpec, _minor_version: int) -> Violation | None:
    names = [c.name for c in _containers(pod) if c.ctx.get("allowPrivilegeEscalation") is not False]
    if not names:
        return None
    return Violation(
        "allowPrivilegeEscalation != false",
        f"{_who(names)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities_restricted(pod: PodSpec, _minor_version: int) -> Violation | None:
    no_drop: list[str] = []
    bad_add: list[str] = []
    for c in _containers(pod):
        caps = _map(c.ctx.get("capabilities"))
        if "ALL" not in [str(d) for d in _list(caps.get("drop"))]:
            no_drop.append(c.name)
        added = [str(a) for a in _list(caps.get("add"))]
        forbidden = [a for a in added if a not in RESTRICTED_CAPABILITIES]
        if forbidden:
            bad_add.append(_must_not_add(c.name, forbidden))
    bad = (
        [f'{_who(no_drop)} must set securityContext.capabilities.drop=["ALL"]'] if no_drop else []
    ) + bad_add
    return Violation("unrestricted capabilities", "; ".join(bad)) if bad else None


def _restricted_volumes(pod: PodSpec, _minor_version: int) -> Violation | None:
    names: list[str] = []
    kinds: set[str] = set()
    for v in _list(pod.get("volumes")):
        volume = _map(v)
        sources = [k for k in volume if k not in _VOLUME_META]
        bad = [k for k in sources if k not in RESTRICTED_VOLUME_TYPES]
        if bad:
            names.append(str(volume.get("name", "")))
            kinds.update(bad)
    if not names:
        return None
    one = len(names) == 1
    detail = (
        f"{'volume' if one else 'volumes'} {_quoted(names)} {'uses' if one else 'use'} "
        f"{'restricted volume type' if len(kinds) == 1 else 'restricted volume types'} "
        f"{_quoted(sorted(kinds))}"
    )
    return Violation("restricted volume types", detail)


def _run_as_non_root(pod: PodSpec, _minor_version: int) -> Violation | None:
    pod_value = _pod_ctx(pod).get("runAsNonRoot")
    bad: list[str] = []
    if pod_value is False:
        bad.append("pod must not set securityContext.runAsNonRoot=false")
    containers = _containers(pod)
    explicit_false = [c.name for c in containers if c.ctx.get("runAsNonRoot") is False]
    if explicit_false:
        bad.append(f"{_who(explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod_value is not True:
        unset = [
            c.name
            for c in containers
            if "runAsNonRoot" not in c.ctx or c.ctx["runAsNonRoot"] is None
        ]
        if unset:
            bad.append(f"pod or {_who(unset)} must set securityContext.runAsNonRoot=true")
    return Violation("runAsNonRoot != true", "; ".join(bad)) if bad else None


def _run_as_user(pod: PodSpec, _minor_version: int) -> Violation | None:
    bad = _pod_and_containers(
        pod, lambda ctx: ctx.get("runAsUser") == 0, "must not set runAsUser=0"
    )
    return Violation("runAsUser=0", "; ".join(bad)) if bad else None


def _seccomp_restricted(pod: PodSpec, _minor_version: int) -> Violation | None:
    allowed = ("RuntimeDefault", "Localhost")
    pod_type = _seccomp_type(_pod_ctx(pod))
    bad: list[str] = []
    if pod_type is not None and pod_type not in allowed:
        bad.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    containers = _containers(pod)
    wrong = [c for c in containers if _seccomp_type(c.ctx) not in (None, *allowed)]
    for kind in sorted({str(_seccomp_type(c.ctx)) for c in wrong}):
        names = [c.name for c in wrong if _seccomp_type(c.ctx) == kind]
        bad.append(f'{_who(names)} must not set securityContext.seccompProfile.type to "{kind}"')
    if pod_type not in allowed:
        unset = [c.name for c in containers if _seccomp_type(c.ctx) is None]
        if unset:
            bad.append(
                f"pod or {_who(unset)} must set securityContext.seccompProfile.type to "
                '"RuntimeDefault" or "Localhost"'
            )
    return Violation("seccompProfile", "; ".join(bad)) if bad else None


Check = Callable[[PodSpec, int], "Violation | None"]

# PodSecurity's checks by ID, in its (alphabetical) order. A restricted check replaces the
# baseline check of the same concern (capabilities, seccompProfile, hostPath volumes).
BASELINE_CHECKS: Final[Mapping[str, Check]] = {
    "appArmorProfile": _app_armor,
    "capabilities_baseline": _capabilities_baseline,
    "hostNamespaces": _host_namespaces,
    "hostPathVolumes": _host_path_volumes,
    "hostPorts": _host_ports,
    "hostProcess": _host_process,
    "privileged": _privileged,
    "procMount": _proc_mount,
    "seLinuxOptions": _se_linux,
    "seccompProfile_baseline": _seccomp_baseline,
    "sysctls": _sysctls,
}
RESTRICTED_CHECKS: Final[Mapping[str, Check]] = {
    "allowPrivilegeEscalation": _allow_privilege_escalation,
    "capabilities_restricted": _capabilities_restricted,
    "restrictedVolumes": _restricted_volumes,
    "runAsNonRoot": _run_as_non_root,
    "runAsUser": _run_as_user,
    "seccompProfile_restricted": _seccomp_restricted,
}
_REPLACED_BY_RESTRICTED: Final = frozenset(
    {"capabilities_baseline", "seccompProfile_baseline", "hostPathVolumes"}
)


def checks_for(level: Level) -> list[tuple[str, Check]]:
    if level == "privileged":
        return []
    chosen = dict(BASELINE_CHECKS)
    if level == "restricted":
        for replaced in _REPLACED_BY_RESTRICTED:
            del chosen[replaced]
        chosen.update(RESTRICTED_CHECKS)
    return sorted(chosen.items())


def evaluate(pod: PodSpec, level: Level, version: str = "latest") -> list[Violation]:
    """Every check of `level` the pod fails, in PodSecurity's order; empty when admitted."""
    minor = _minor(version)
    found = (check(pod, minor) for _, check in checks_for(level))
    return [v for v in found if v is not None]


def refusal_message(
    namespace: str, level: Level, version: str, violations: Sequence[Violation]
) -> str:
    reasons = ", ".join(f"{v.check} ({v.detail})" for v in violations)
    return (
        f'namespace "{namespace}" would refuse the pod: '
        f'violates PodSecurity "{level}:{version}": {reasons}'
    )


def pss_labels(enforce: Level, audit: Level, warn: Level, version: str) -> dict[str, str]:
    """The six `pod-security.kubernetes.io/*` namespace labels."""
    labels: dict[str, str] = {}
    for mode, level in zip(MODES, (enforce, audit, warn), strict=True):
        labels[f"{LABEL_PREFIX}{mode}"] = level
        labels[f"{LABEL_PREFIX}{mode}-version"] = version
    return labels


# --- the vcluster 0.20.0 chart's pod (k8s distro) --------------------------------------

# Chart defaults (values.yaml of vcluster 0.20.0) for the security contexts it renders.
CHART_SYNCER_SECURITY_CONTEXT: Final[Mapping[str, Any]] = {
    "allowPrivilegeEscalation": False,
    "runAsUser": 0,
    "runAsGroup": 0,
}
# Init containers of the k8s distro; each gets `controlPlane.distro.k8s.securityContext`.
K8S_INIT_CONTAINERS: Final = ("vcluster-copy", "kube-controller-manager", "kube-apiserver")
SYNCER: Final = "syncer"


def helm_merge(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values over chart defaults: maps merge, `null` deletes."""
    merged = dict(defaults)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = helm_merge(_map(merged[key]), cast("Mapping[str, Any]", value))
        else:
            merged[key] = value
    return merged


def _path(values: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = values
    for key in keys:
        node = _map(node.get(key))
    return node


def vcluster_pod_spec(values: Mapping[str, Any]) -> dict[str, Any]:
    """The security-relevant part of the pod the vcluster 0.20.0 chart renders from `values`."""
    sts_security = _path(values, "controlPlane", "statefulSet", "security")
    distro_ctx = helm_merge({}, _path(values, "controlPlane", "distro", "k8s", "securityContext"))
    syncer_ctx = helm_merge(
        CHART_SYNCER_SECURITY_CONTEXT, _map(sts_security.get("containerSecurityContext"))
    )
    return {
        "securityContext": helm_merge({}, _map(sts_security.get("podSecurityContext"))),
        "initContainers": [
            {"name": name, "securityContext": dict(distro_ctx)} for name in K8S_INIT_CONTAINERS
        ],
        "containers": [{"name": SYNCER, "securityContext": syncer_ctx}],
        # The volume kinds the chart mounts for these values: emptyDir scratch (binaries the
        # init containers copy), the config Secret and the data claim. hostPath comes only with
        # the chart's hostpath mapper, which these values never enable.
        "volumes": [
            {"name": "binaries", "emptyDir": {}},
            {"name": "vcluster-config", "secret": {"secretName": "vc-config"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        ],
    }
