"""What `./sovereign e2e` concludes from a live region: pure functions of API responses.

Every function takes the JSON the Kubernetes or Hetzner API returned (as plain dicts, the way
`ApiClient.sanitize_for_serialization` or `json.loads` gives them) and returns a `Check`: its
name, whether it passed, and what it saw. The live side (tools/e2e.py) only fetches; the tests
feed these functions recorded responses (tests/data/e2e/): a Ready cluster, a crash-looping
vCluster, a NotReady node, leftovers to sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

from config.pss import LABEL_PREFIX as PSS_PREFIX
from config.pss import MODES as PSS_MODES
from render.naming import TEST_RUN_LABEL_KEY

Json = Mapping[str, Any]

# The vClusters each role runs (DoD invariant A4).
A4: Final[Mapping[str, frozenset[str]]] = {
    "primary": frozenset({"mgmt", "dmz"}),
    "secondary": frozenset({"dmz", "rtz"}),
}
# What a pod prints after trying the metadata service (tools/e2e.py's probe pod).
METADATA_BLOCKED: Final = "METADATA-BLOCKED"
METADATA_REACHED: Final = "METADATA-REACHED"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def _sub(obj: Json | None, key: str) -> Json:
    """The object under `key`, empty when absent or null (as the API leaves unset fields)."""
    value = obj.get(key) if obj is not None else None
    return cast(Json, value or {})


def _items(listing: Json) -> list[Json]:
    return cast(list[Json], listing.get("items") or [])


def _condition(obj: Json, kind: str) -> str | None:
    for condition in cast(list[Json], _sub(obj, "status").get("conditions") or []):
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _name(obj: Json) -> str:
    return str(_sub(obj, "metadata").get("name", "?"))


def nodes_ready(nodes: Json, expected: int) -> Check:
    """Every node Ready, and as many as the stack has servers."""
    items = _items(nodes)
    not_ready = [_name(n) for n in items if _condition(n, "Ready") != "True"]
    if len(items) != expected:
        return Check("nodes Ready", False, f"{len(items)} node(s), expected {expected}")
    if not_ready:
        return Check("nodes Ready", False, f"not Ready: {', '.join(not_ready)}")
    return Check("nodes Ready", True, f"{len(items)}/{expected} Ready")


def cilium_ready(daemonset: Json, operator: Json) -> Check:
    """The agent DaemonSet ready on every node it is scheduled on, the operator's replicas."""
    status = _sub(daemonset, "status")
    desired = int(status.get("desiredNumberScheduled") or 0)
    ready = int(status.get("numberReady") or 0)
    op_status = _sub(operator, "status")
    op_want = int(_sub(operator, "spec").get("replicas") or 0)
    op_ready = int(op_status.get("readyReplicas") or 0)
    ok = desired > 0 and ready == desired and op_want > 0 and op_ready == op_want
    return Check(
        "Cilium agents and operator",
        ok,
        f"agents {ready}/{desired}, operator {op_ready}/{op_want}",
    )


def webhook_answers(error: str | None) -> Check:
    """A server-side dry-run of a cert-manager object: the API calls the webhook to admit it.

    `error` is None when the dry-run was admitted, else the API's message (an unreachable
    webhook reads `failed calling webhook "webhook.cert-manager.io"`).
    """
    if error is None:
        return Check("cert-manager webhook answers", True, "dry-run Issuer admitted")
    return Check("cert-manager webhook answers", False, error.strip().splitlines()[0][:200])


def vcluster_ready(
    vcluster: str, statefulset: Json | None, namespace: Json | None, pss: Mapping[str, str]
) -> Check:
    """The vCluster StatefulSet 1/1, and its namespace carrying the Pod Security labels asked."""
    name = f"vCluster {vcluster}"
    if statefulset is None:
        return Check(name, False, f"no StatefulSet {vcluster}-vcluster in namespace {vcluster}")
    status = _sub(statefulset, "status")
    want = int(_sub(statefulset, "spec").get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    problems: list[str] = []
    if not (want == 1 and ready == 1):
        problems.append(f"StatefulSet {ready}/{want} ready")
    labels = _sub(_sub(namespace, "metadata"), "labels")
    wrong = [
        f"{PSS_PREFIX}{mode}={labels.get(PSS_PREFIX + mode)!s} (asked {pss[mode]})"
        for mode in PSS_MODES
        if mode in pss and labels.get(PSS_PREFIX + mode) != pss[mode]
    ]
    problems += wrong
    if problems:
        return Check(name, False, "; ".join(problems))
    levels = ", ".join(f"{mode}={pss[mode]}" for mode in PSS_MODES if mode in pss)
    return Check(name, True, f"1/1, {levels}")


def why_not_ready(pods: Json) -> str:
    """The reason a vCluster pod is not ready (CrashLoopBackOff and its restarts), for the table."""
    reasons: list[str] = []
    for pod in _items(pods):
        statuses = cast(list[Json], _sub(pod, "status").get("containerStatuses") or [])
        for container in statuses:
            waiting = _sub(_sub(container, "state"), "waiting")
            if waiting.get("reason"):
                reasons.append(
                    f"{_name(pod)}/{container.get('name')}: {waiting['reason']} "
                    f"(restarts {container.get('restartCount', 0)})"
                )
    return "; ".join(reasons)


def a4_count(role: str, statefulsets: Sequence[Json]) -> Check:
    """The vClusters that run are exactly the role's (primary MGMT + DMZ, secondary DMZ + RTZ)."""
    found = {
        _name(sts).removesuffix("-vcluster")
        for sts in statefulsets
        if _name(sts).endswith("-vcluster")
    }
    want = A4[role]
    detail = f"{role}: found {', '.join(sorted(found)) or 'none'}, want {', '.join(sorted(want))}"
    return Check("DoD A4 vClusters per role", frozenset(found) == want, detail)


def metadata_blocked(pod: Json, log: str) -> Check:
    """The probe pod in a vCluster namespace must not reach 169.254.169.254."""
    phase = str(_sub(pod, "status").get("phase"))
    if METADATA_REACHED in log:
        return Check("metadata 169.254.169.254 blocked", False, "a pod reached it")
    if phase == "Succeeded" and METADATA_BLOCKED in log:
        return Check("metadata 169.254.169.254 blocked", True, "the probe timed out")
    return Check(
        "metadata 169.254.169.254 blocked", False, f"probe pod {phase}: {log.strip()[:160]}"
    )


def upgrade_plan(plans: Json, name: str) -> Check:
    names = [_name(plan) for plan in _items(plans)]
    ok = name in names
    return Check(
        "system-upgrade Plan", ok, f"Plan {name} {'exists' if ok else 'missing'} ({len(names)})"
    )


def backup_snapshot(snapshots: Json) -> Check:
    """k3s records each etcd snapshot as an ETCDSnapshotFile; `spec.s3` set means it went to
    the bucket, `status.readyToUse` that the upload finished."""
    uploaded = [
        _name(s)
        for s in _items(snapshots)
        if _sub(s, "spec").get("s3") and _sub(s, "status").get("readyToUse") is True
    ]
    if uploaded:
        return Check("etcd snapshot in the bucket", True, f"{len(uploaded)}: {uploaded[-1]}")
    local = len(_items(snapshots))
    return Check("etcd snapshot in the bucket", False, f"none uploaded ({local} snapshot(s))")


# ---- the sweep ------------------------------------------------------------------------------

# Hetzner API collections the program creates, in the order a delete succeeds (servers free
# their IPs, load balancers and placement groups; networks go last).
SWEPT: Final = (
    "servers",
    "load_balancers",
    "primary_ips",
    "placement_groups",
    "firewalls",
    "ssh_keys",
    "networks",
)


@dataclass(frozen=True, slots=True)
class Leftover:
    collection: str
    id: int
    name: str
    test_run: str
    age: timedelta


def _created(text: str) -> datetime:
    # Hetzner writes RFC 3339 with an offset, e.g. 2026-12-04T06:12:09+00:00.
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def leftovers(
    listings: Mapping[str, Json], now: datetime, older_than: timedelta, keep: str | None = None
) -> list[Leftover]:
    """Labelled test resources older than the bound, deletion order (never the run `keep`)."""
    found: list[Leftover] = []
    for collection in SWEPT:
        for item in cast(list[Json], _sub(listings, collection).get(collection) or []):
            labels = _sub(item, "labels")
            run = labels.get(TEST_RUN_LABEL_KEY)
            if run is None or run == keep:
                continue
            age = now - _created(str(item["created"]))
            if age >= older_than:
                found.append(Leftover(collection, int(item["id"]), str(item["name"]), run, age))
    return found


def autoscaled_servers(listing: Json, label: str, groups: Sequence[str]) -> list[tuple[int, str]]:
    """(id, name) of the servers cluster-autoscaler created for `groups` (its label `label`).

    Pulumi's state does not hold them, so a destroy leaves them behind; the run deletes them
    before it destroys the region (a server outside the groups is never taken, whatever the
    listing holds).
    """
    return [
        (int(item["id"]), str(item["name"]))
        for item in cast(list[Json], listing.get("servers") or [])
        if _sub(item, "labels").get(label) in groups
    ]


# ---- waits and the table --------------------------------------------------------------------


class WaitTimeoutError(Exception):
    """A bounded wait ran out; the message names what it waited for and what it last saw."""


def wait_for(
    what: str,
    probe: Callable[[], tuple[bool, str]],
    *,
    seconds: float,
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str:
    """Call `probe` until it says done or `seconds` pass; its last word goes in the error."""
    deadline = clock() + seconds
    last = "not tried"
    while True:
        try:
            done, last = probe()
        except Exception as err:  # an API not answering yet is a reason to wait, not to stop
            done, last = False, f"{type(err).__name__}: {str(err).strip()[:160]}"
        if done:
            return last
        if clock() >= deadline:
            raise WaitTimeoutError(f"waited {seconds:.0f} s for {what}; last: {last}")
        sleep(interval)


def table(checks: Sequence[Check]) -> str:
    rows = [("check", "result", "detail")] + [
        (c.name, "ok" if c.ok else "FAIL", c.detail) for c in checks
    ]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(
        f"{r[0].ljust(width[0])}  {r[1].ljust(width[1])}  {r[2]}".rstrip() for r in rows
    )
