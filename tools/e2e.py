"""`./sovereign e2e`: deploy a throwaway region, check it through the Kubernetes API, destroy it.

    ./sovereign e2e [--stack-file F] [--keep] [--sweep-hours H]

1. A new stack `e2e-<time>-<random>` gets the `sovereign:` config of F (default
   Pulumi.primary.yaml) with its own Sovereign name (`e2e<suffix>`, so no physical name meets a
   real region's), `sovereign:testRun` set to the stack name (every Hetzner resource is
   labelled `openova.io/test-run`) and `protect` off; `pulumi up` runs the same program as a
   real region, through the Automation API and the pinned CLI. HCLOUD_TOKEN (a read-write
   token of the test project) is set as both secrets the program reads, `hcloud:token` and
   `sovereign:hcloudToken`; F's own encrypted (`secure:`) values are never copied (they are
   F's ciphertext): its `sovereign:hcloudToken` is replaced, any other one is refused by name.
2. The live cluster is checked with the official Kubernetes client: nodes Ready, Cilium's
   agents and operator, cert-manager's webhook (a server-side dry-run it must admit), each
   vCluster StatefulSet 1/1 with the Pod Security labels asked for, the DoD A4 count for the
   role, a pod in a vCluster namespace that must not reach 169.254.169.254, the
   system-upgrade Plan and, with backups on, an etcd snapshot uploaded to the bucket.
3. Everything is destroyed, also when a step failed (unless --keep); then a sweep deletes
   Hetzner resources labelled `openova.io/test-run` older than --sweep-hours (a run that died
   before its destroy).

Every wait is bounded and named; a table of checks ends the run; the exit code is 1 when any
check failed, 2 for a usage problem. F must be a primary's file: a secondary reads its
primary's outputs, which a throwaway region does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import yaml

from config.secrets import HCLOUD_TOKEN_KEY
from render import autoscaler
from render.naming import TEST_RUN_LABEL_KEY
from tools import e2e_checks as checks
from tools.e2e_checks import Check, WaitTimeoutError, wait_for
from tools.stacks import E2E_PREFIX, ROOT, PlanError, read_stack_file

if TYPE_CHECKING:
    from pulumi.automation import ConfigValue

    from config.models import StackConfig

HETZNER_API: Final = "https://api.hetzner.cloud/v1"
# Bounds of each wait (seconds): a region from nothing takes servers ~1 min, k3s and the charts
# several more; these are ceilings, not estimates.
WAITS: Final[Mapping[str, int]] = {
    "nodes Ready": 600,
    "Cilium agents and operator": 600,
    "cert-manager webhook": 300,
    "vCluster StatefulSets": 900,
    "metadata probe pod": 180,
    "etcd snapshot upload": 1800,
}
PROBE_IMAGE: Final = "docker.io/library/busybox:1.37.0"


def _say(text: str) -> None:
    print(text, flush=True)


# ---- the Hetzner API (the sweep) ------------------------------------------------------------


def hetzner(method: str, path: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{HETZNER_API}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return cast(dict[str, Any], json.loads(body)) if body else {}


def list_labelled(
    token: str, collection: str, selector_text: str = TEST_RUN_LABEL_KEY
) -> dict[str, Any]:
    """Every resource of `collection` matching the label selector (all pages); by default the
    test label."""
    items: list[Any] = []
    page: int | None = 1
    selector = urllib.parse.quote(selector_text)
    while page is not None:
        doc = hetzner("GET", f"/{collection}?label_selector={selector}&page={page}", token)
        items += cast(list[Any], doc.get(collection) or [])
        pagination = cast(dict[str, Any], (doc.get("meta") or {}).get("pagination") or {})
        page = cast(int | None, pagination.get("next_page"))
    return {collection: items}


def sweep(token: str, older_than: timedelta, keep: str | None) -> Check:
    listings = {c: list_labelled(token, c) for c in checks.SWEPT}
    found = checks.leftovers(listings, datetime.now(UTC), older_than, keep)
    failed = _delete_each(
        token, [(f"/{i.collection}/{i.id}", f"{i.collection}/{i.name}") for i in found]
    )
    detail = _deleted(len(found), failed, f"older than {older_than}")
    return Check("sweep of labelled leftovers", not failed, detail)


def _delete_each(token: str, targets: list[tuple[str, str]]) -> list[str]:
    """DELETE each (API path, name for people); what could not be deleted, with the reason."""
    failed: list[str] = []
    for path, name in targets:
        try:
            hetzner("DELETE", path, token)
        except Exception as err:  # one stuck resource must not stop the others
            failed.append(f"{name}: {err}")
    return failed


def _deleted(found: int, failed: list[str], what: str) -> str:
    detail = f"{found - len(failed)} deleted ({what})"
    if failed:
        detail += "; not deleted: " + "; ".join(failed)[:300]
    return detail


def delete_autoscaled(token: str, cfg: StackConfig) -> Check:
    """Delete the servers cluster-autoscaler created for the run's autoscaled pools: they are not
    in Pulumi's state (and carry no test label), so neither the destroy nor the sweep would."""
    groups = [autoscaler.node_group(cfg, pool) for pool in autoscaler.autoscaled_pools(cfg)]
    label = autoscaler.facts().node_group_label
    found: list[tuple[int, str]] = []
    for group in groups:
        listing = list_labelled(token, "servers", f"{label}={group}")
        found += checks.autoscaled_servers(listing, label, groups)
    failed = _delete_each(token, [(f"/servers/{server_id}", name) for server_id, name in found])
    return Check(
        "autoscaler's servers", not failed, _deleted(len(found), failed, ", ".join(groups))
    )


# ---- the Kubernetes API ---------------------------------------------------------------------


def _status(err: Exception) -> object:
    """The HTTP status of a kubernetes ApiException (an untyped attribute)."""
    answer: Any = err
    return answer.status


class Cluster:
    """The few reads and writes the checks need, returning the API's JSON as dicts."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        # The kubernetes client ships no type information: its objects are Any here, and every
        # answer is turned into plain JSON dicts at once (`json`).
        loader: Any = config
        api: Any = loader.new_client_from_config_dict(yaml.safe_load(kubeconfig))
        self._plain: Callable[[Any], Any] = api.sanitize_for_serialization
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)

    def json(self, value: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self._plain(value))

    def nodes(self) -> dict[str, Any]:
        return self.json(self.core.list_node())

    def daemonset(self, namespace: str, name: str) -> dict[str, Any]:
        return self.json(self.apps.read_namespaced_daemon_set(name, namespace))

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self.json(self.apps.read_namespaced_deployment(name, namespace))

    def statefulset(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.json(self.apps.read_namespaced_stateful_set(name, namespace))
        except ApiException as err:
            if _status(err) == 404:
                return None
            raise

    def namespace(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.json(self.core.read_namespace(name))
        except ApiException as err:
            if _status(err) == 404:
                return None
            raise

    def pods(self, namespace: str, selector: str) -> dict[str, Any]:
        return self.json(self.core.list_namespaced_pod(namespace, label_selector=selector))

    def custom_list(self, group: str, version: str, plural: str, namespace: str = "") -> Any:
        if namespace:
            return self.custom.list_namespaced_custom_object(group, version, namespace, plural)
        return self.custom.list_cluster_custom_object(group, version, plural)

    def dry_run_issuer(self) -> str | None:
        """Create a cert-manager Issuer with dryRun=All: admission calls the webhook."""
        from kubernetes.client.exceptions import ApiException

        body: dict[str, Any] = {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": {"name": "e2e-webhook-probe", "namespace": "cert-manager"},
            "spec": {"selfSigned": {}},
        }
        try:
            self.custom.create_namespaced_custom_object(
                "cert-manager.io", "v1", "cert-manager", "issuers", body, dry_run="All"
            )
        except ApiException as err:
            answer: Any = err
            return str(answer.body or answer.reason)
        return None

    def probe_metadata(self, namespace: str, name: str) -> None:
        command = (
            "if wget -q -T 5 -O- http://169.254.169.254/hetzner/v1/metadata/instance-id; "
            f"then echo {checks.METADATA_REACHED}; else echo {checks.METADATA_BLOCKED}; fi"
        )
        restricted = {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "probe",
                        "image": PROBE_IMAGE,
                        "command": ["sh", "-c", command],
                        "securityContext": restricted,
                    }
                ],
            },
        }
        self.core.create_namespaced_pod(namespace, body)

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.json(self.core.read_namespaced_pod(name, namespace))

    def log(self, namespace: str, name: str) -> str:
        return str(self.core.read_namespaced_pod_log(name, namespace))


def _waited(
    results: list[Check], name: str, probe: Callable[[], tuple[bool, str]], seconds: int
) -> bool:
    """A bounded wait whose timeout is a failed check naming what it waited for."""
    try:
        wait_for(name, probe, seconds=seconds, interval=10, clock=time.monotonic, sleep=time.sleep)
    except WaitTimeoutError as err:
        results.append(Check(name, False, str(err)))
        return False
    return True


def check_cluster(cluster: Cluster, cfg: Any, servers: int) -> list[Check]:
    """Every check of the live region, in dependency order; each wait bounded by WAITS."""
    from render.slots import active_vclusters
    from render.system_upgrade import SERVER_PLAN_NAME

    results: list[Check] = []

    def last(check: Check) -> tuple[bool, str]:
        return check.ok, check.detail

    if _waited(
        results,
        "nodes Ready",
        lambda: last(checks.nodes_ready(cluster.nodes(), servers)),
        WAITS["nodes Ready"],
    ):
        results.append(checks.nodes_ready(cluster.nodes(), servers))

    def cilium() -> Check:
        return checks.cilium_ready(
            cluster.daemonset("kube-system", "cilium"),
            cluster.deployment("kube-system", "cilium-operator"),
        )

    if _waited(results, "Cilium agents and operator", lambda: last(cilium()), WAITS[cilium().name]):
        results.append(cilium())

    if _waited(
        results,
        "cert-manager webhook",
        lambda: last(checks.webhook_answers(cluster.dry_run_issuer())),
        WAITS["cert-manager webhook"],
    ):
        results.append(checks.webhook_answers(cluster.dry_run_issuer()))

    statefulsets: list[dict[str, Any]] = []
    for vcluster in active_vclusters(cfg):
        pss = cfg.vclusters.spec(vcluster).pod_security
        asked = {"enforce": pss.enforce, "audit": pss.audit, "warn": pss.warn}

        def one(vc: str = vcluster, want: dict[str, str] = asked) -> Check:
            return checks.vcluster_ready(
                vc, cluster.statefulset(vc, f"{vc}-vcluster"), cluster.namespace(vc), want
            )

        if _waited(
            results, f"vCluster {vcluster}", lambda: last(one()), WAITS["vCluster StatefulSets"]
        ):
            results.append(one())
        else:
            why = checks.why_not_ready(cluster.pods(vcluster, "app=vcluster"))
            if why:
                results.append(Check(f"vCluster {vcluster} pods", False, why))
    # Every vCluster that runs, not only those the role asks for: one too many breaks A4 too.
    for vcluster in ("mgmt", "dmz", "rtz"):
        sts = cluster.statefulset(vcluster, f"{vcluster}-vcluster")
        if sts is not None:
            statefulsets.append(sts)
    results.append(checks.a4_count(cfg.region.role, statefulsets))

    namespace = active_vclusters(cfg)[0]
    name = f"e2e-metadata-{secrets.token_hex(3)}"
    cluster.probe_metadata(namespace, name)

    def probe_done() -> tuple[bool, str]:
        phase = str(cluster.pod(namespace, name).get("status", {}).get("phase"))
        return phase in ("Succeeded", "Failed"), phase

    try:
        if _waited(results, "metadata probe pod", probe_done, WAITS["metadata probe pod"]):
            results.append(
                checks.metadata_blocked(cluster.pod(namespace, name), cluster.log(namespace, name))
            )
    finally:
        cluster.core.delete_namespaced_pod(name, namespace)

    results.append(
        checks.upgrade_plan(
            cluster.custom_list("upgrade.cattle.io", "v1", "plans", "system-upgrade"),
            SERVER_PLAN_NAME,
        )
    )
    if cfg.backups.enabled:

        def snapshot() -> Check:
            return checks.backup_snapshot(
                cluster.custom_list("k3s.cattle.io", "v1", "etcdsnapshotfiles")
            )

        if _waited(
            results, "etcd snapshot upload", lambda: last(snapshot()), WAITS["etcd snapshot upload"]
        ):
            results.append(snapshot())
    else:
        results.append(Check("etcd snapshot in the bucket", True, "not asked: backups off"))
    return results


# ---- the run --------------------------------------------------------------------------------


def _holds_secure(value: object) -> bool:
    """Whether `value` is or holds a stack file's `secure:` object (an encrypted value)."""
    if isinstance(value, Mapping):
        mapping = cast(Mapping[str, object], value)
        if set(mapping) == {"secure"}:
            return True
        return any(_holds_secure(item) for item in mapping.values())
    if isinstance(value, list):
        return any(_holds_secure(item) for item in cast(list[object], value))
    return False


def throwaway_config(raw: Mapping[str, Any], stack: str, suffix: str) -> dict[str, Any]:
    """The `sovereign:` config of the throwaway stack: its own name, labelled, unprotected.

    An encrypted (`secure:`) value is the other stack's ciphertext, under that stack's
    passphrase or key: copied, it would reach the program as a JSON string, not the secret.
    The cluster's token is set from HCLOUD_TOKEN instead (`config_values`); any other
    encrypted key is refused by name (PlanError), as the throwaway stack cannot decrypt it.
    """
    token_key = f"sovereign:{HCLOUD_TOKEN_KEY}"
    config = {k: v for k, v in raw.items() if k.startswith("sovereign:") and k != token_key}
    encrypted = sorted(k for k, v in config.items() if _holds_secure(v))
    if encrypted:
        raise PlanError(
            f"{', '.join(encrypted)}: an encrypted value of the operator's stack, which the "
            "throwaway stack cannot decrypt (it has its own passphrase). Run with a stack file "
            "that holds no secure: values other than the Hetzner tokens (--stack-file), e.g. "
            "one with backups and the registry mirror's login left out",
            code=2,
        )
    config["sovereign:name"] = f"e2e{suffix}"[:20]
    config["sovereign:testRun"] = stack
    plane = dict(cast(Mapping[str, Any], config.get("sovereign:controlPlane") or {}))
    plane["protect"] = False
    config["sovereign:controlPlane"] = plane
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./sovereign e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack-file",
        type=Path,
        default=ROOT / "Pulumi.primary.yaml",
        help="a primary's stack file whose config the throwaway region takes",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the region up (no destroy, no sweep)"
    )
    parser.add_argument(
        "--sweep-hours",
        type=float,
        default=6.0,
        help="delete labelled leftovers older than this (default 6)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get("HCLOUD_TOKEN", "")
    if not token:
        print(
            "./sovereign e2e: set HCLOUD_TOKEN to a token of the Hetzner project to test in",
            file=sys.stderr,
        )
        return 2
    try:
        doc = read_stack_file(args.stack_file)
    except PlanError as err:
        print(f"./sovereign e2e: {err}", file=sys.stderr)
        return 2
    raw = cast(Mapping[str, Any], doc.get("config") or {})
    region = cast(Mapping[str, Any], raw.get("sovereign:region") or {})
    if region.get("role") != "primary":
        print(
            f"./sovereign e2e: {args.stack_file.name} is not a primary's: a secondary reads its "
            "primary's outputs, which a throwaway region has none of",
            file=sys.stderr,
        )
        return 2
    suffix = datetime.now(UTC).strftime("%m%d%H%M") + secrets.token_hex(2)
    stack_name = f"{E2E_PREFIX}{suffix}"
    try:
        config = throwaway_config(raw, stack_name, suffix)
    except PlanError as err:
        print(f"./sovereign e2e: {args.stack_file.name}: {err}", file=sys.stderr)
        return 2
    results = run(stack_name, config, token, keep=args.keep, sweep_hours=args.sweep_hours)
    _say("\n" + checks.table(results))
    return 0 if all(c.ok for c in results) else 1


def config_values(config: Mapping[str, Any], token: str) -> dict[str, ConfigValue]:
    """What `pulumi config set` would store in the throwaway stack: its plain config, and the
    HCLOUD_TOKEN as both secrets the program reads: the provider's `hcloud:token` and the
    cluster's own `sovereign:hcloudToken` (one token of the test project serves both: the
    throwaway region lives and dies with that project)."""
    from pulumi.automation import ConfigValue

    values = {
        key: ConfigValue(value if isinstance(value, str) else json.dumps(value))
        for key, value in config.items()
    }
    values["hcloud:token"] = ConfigValue(token, secret=True)
    values[f"sovereign:{HCLOUD_TOKEN_KEY}"] = ConfigValue(token, secret=True)
    return values


def run(
    stack_name: str, config: Mapping[str, Any], token: str, *, keep: bool, sweep_hours: float
) -> list[Check]:
    from pulumi import automation as auto

    from checks.preflight import parse
    from tools import pulumi_cli

    cli = pulumi_cli.locate(installer=pulumi_cli.install, say=_say)
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", secrets.token_urlsafe(24))
    cfg = parse({k.removeprefix("sovereign:"): v for k, v in config.items()}, stack_name)
    stack = auto.create_stack(
        stack_name,
        work_dir=str(ROOT),
        opts=auto.LocalWorkspaceOptions(
            pulumi_command=auto.PulumiCommand(root=str(cli.root)),
            secrets_provider="passphrase",
        ),
    )
    stack_file = ROOT / f"Pulumi.{stack_name}.yaml"
    results: list[Check] = []
    try:
        stack.set_all_config(config_values(config, token))
        _say(f"e2e: deploying {stack_name} (labelled {TEST_RUN_LABEL_KEY}={stack_name})")
        try:
            stack.up(on_output=_say, color="never")
            results.append(Check("deploy (pulumi up)", True, stack_name))
            kubeconfig = str(stack.outputs()["kubeconfig"].value)
            results += check_cluster(Cluster(kubeconfig), cfg, cfg.control_plane.count)
        except Exception as err:  # a failed step is a row; the destroy still runs
            results.append(Check("deploy and checks", False, str(err).strip()[-300:]))
    finally:
        if keep:
            _say(f"e2e: --keep: {stack_name} stays up; pulumi destroy --stack {stack_name}")
        else:
            try:
                if autoscaler.autoscaled_pools(cfg):
                    results.append(delete_autoscaled(token, cfg))
                stack.destroy(on_output=_say, color="never")
                stack.workspace.remove_stack(stack_name)
                stack_file.unlink(missing_ok=True)
                results.append(Check("destroy", True, stack_name))
            except Exception as err:
                results.append(Check("destroy", False, str(err).strip()[-300:]))
            results.append(sweep(token, timedelta(hours=sweep_hours), keep=None))
    return results


if __name__ == "__main__":
    sys.exit(main())
