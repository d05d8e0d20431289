"""Wait, within one deadline, for the API and then for every control-plane node.

`SOVEREIGN_NODES_MUST_BE=registered` (before Cilium): every node joined, i.e. its Node object
exists; it cannot be Ready yet, since k3s runs without flannel and a node reports
`NetworkPluginNotReady` until Cilium installs the CNI. `Ready` (after Cilium, before every other
chart): every node Ready.

`SOVEREIGN_REMOVE_NODE=<node>` instead removes a control-plane server the program is about to
replace: it deletes the Node object and waits, bounded, until it is gone. Deleting the Node of a k3s
server also removes its etcd member (k3s's etcd controller holds a finalizer on it; k3s-io/k3s
#9817 and #6816, checked 2026-12-04), so the new server can join under the same name.

Runs on the deployer (the `command.local.Command` of the kubeconfig step, `python3 -c`), with the
program's own client certificate: no SSH. That certificate's group is cluster-admin only through
a ClusterRoleBinding k3s applies from its manifests directory a few seconds after the API first
answers (render/apiserver.py), so until then the node reads answer 403 and are retried like any
other not-yet. Reads only environment variables, imports only the
standard library. Each failure names the server and what it waited for, on stderr, and exits 1.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

# render/apiserver.DEPLOYER_BINDING (this script imports only the standard library).
BINDING = "sovereign-deployers"


def _context(ca: str, cert: str, key: str, directory: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca)
    cert_path, key_path = Path(directory, "c"), Path(directory, "k")
    for path, pem in ((cert_path, cert), (key_path, key)):
        # The key is written 0600 from the start, inside a private temporary directory.
        path.touch(mode=0o600)
        path.write_text(pem)
    context.load_cert_chain(cert_path, key_path)
    return context


def _get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return int(response.status), cast(bytes, response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), b""


def _delete(url: str, context: ssl.SSLContext) -> int:
    request = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def remove(env: dict[str, str], clock: Any = time) -> int:
    """Delete the Node of the server being replaced; wait until it and its etcd member are gone."""
    api, node = env["SOVEREIGN_API"], env["SOVEREIGN_REMOVE_NODE"]
    budget = int(env["SOVEREIGN_TIMEOUT"])
    deadline = clock.time() + budget
    url = f"{api}/api/v1/nodes/{node}"
    with tempfile.TemporaryDirectory() as directory:
        context = _context(
            env["SOVEREIGN_CA"], env["SOVEREIGN_CERT"], env["SOVEREIGN_KEY"], directory
        )
        deleted, last = False, "no answer yet"
        while True:
            try:
                if not deleted:
                    status = _delete(url, context)
                    # 404: already gone (removed by hand, or never registered).
                    deleted = status in (200, 202, 404)
                    last = f"DELETE: HTTP {status}"
                if deleted:
                    status, _ = _get(url, context)
                    if status == 404:
                        print(f"{node} and its etcd member are removed", file=sys.stderr)
                        return 0
                    last = f"still there (HTTP {status}): k3s has not removed its etcd member yet"
            except (OSError, ValueError) as err:
                last = str(err)
            if clock.time() >= deadline:
                print(
                    f"waited {budget}s to remove node {node} at {api} before replacing its "
                    f"server ({last}). The new server cannot join under the same name while the "
                    f"old Node and etcd member remain: run `kubectl delete node {node}` against "
                    "a live server (k3s then removes the etcd member), then `up` again",
                    file=sys.stderr,
                )
                return 1
            clock.sleep(5)


def _node_state(body: bytes) -> str:
    doc = cast(dict[str, Any], json.loads(body))
    conditions = cast(list[dict[str, Any]], doc.get("status", {}).get("conditions", []))
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return "Ready" if ready is not None and ready.get("status") == "True" else "NotReady"


def wait(env: dict[str, str], clock: Any = time) -> int:
    api = env["SOVEREIGN_API"]
    must_be_ready = env.get("SOVEREIGN_NODES_MUST_BE", "Ready") == "Ready"
    nodes = [n for n in env["SOVEREIGN_NODES"].split(",") if n]
    addresses = dict(zip(nodes, env["SOVEREIGN_NODE_IPS"].split(",")))  # noqa: B905 - python3 3.9 on macOS
    budget = int(env["SOVEREIGN_TIMEOUT"])
    # After a restore: an object every restored snapshot holds. Checked once, after /readyz.
    must_exist = env.get("SOVEREIGN_MUST_EXIST", "")
    deadline = clock.time() + budget
    with tempfile.TemporaryDirectory() as directory:
        context = _context(
            env["SOVEREIGN_CA"], env["SOVEREIGN_CERT"], env["SOVEREIGN_KEY"], directory
        )
        steps = [("/readyz", None)]
        if must_exist:
            steps.append((must_exist, None))
        steps += [(f"/api/v1/nodes/{node}", node) for node in nodes]
        for path, node in steps:
            last = "no answer yet"
            while True:
                try:
                    status, body = _get(api + path, context)
                    if node is None and status == 200:
                        break
                    if path == must_exist and status == 404:
                        print(_lost(api, must_exist), file=sys.stderr)
                        return 1
                    if node is not None and status == 200:
                        if not must_be_ready:
                            print(f"{node} joined", file=sys.stderr)
                            break
                        if _node_state(body) == "Ready":
                            print(f"{node} is Ready", file=sys.stderr)
                            break
                    last = f"HTTP {status}" if status != 200 else "NotReady"
                except (OSError, ValueError) as err:
                    last = str(err)
                if clock.time() >= deadline:
                    print(
                        _failure(api, node, addresses, budget, last, must_be_ready),
                        file=sys.stderr,
                    )
                    return 1
                clock.sleep(5)
    return 0


def _lost(api: str, path: str) -> str:
    return (
        f"the restore brought nothing back: {api}{path} does not exist, yet every snapshot of "
        "this region holds it. k3s on cp-1 runs a new, empty etcd (a failed or wrong restore), "
        "and the program keeps the cluster's identity after a restore, so it would take the "
        "empty cluster for the old one. Refusing to continue. On cp-1 run `cloud-init status "
        "--long` and read /var/log/cloud-init-output.log, then replace cp-1 again with a good "
        "sovereign:replacement.restoreSnapshot"
    )


def _failure(
    api: str, node: str | None, addresses: dict[str, str], budget: int, last: str, ready: bool
) -> str:
    if node is None:
        return (
            f"waited {budget}s for the Kubernetes API at {api}/readyz ({last}): the first "
            "server's cloud-init or k3s did not come up; on it run `cloud-init status --long` "
            "and `journalctl -u k3s`"
        )
    where = addresses.get(node, "?")
    if last.startswith("HTTP 403"):
        return (
            f"waited {budget}s for server {node} ({where}): the API refuses the deployer "
            f"({last}): its group is not bound to cluster-admin. k3s applies the "
            f"ClusterRoleBinding {BINDING} from /var/lib/rancher/k3s/server/manifests on the "
            "first server; if the binding was deleted or the group renamed on purpose, this "
            "certificate is revoked (docs/security.md). On the first server run "
            f"`kubectl get clusterrolebinding {BINDING}` and `journalctl -u k3s`"
        )
    state = "did not register as a node" if last.startswith("HTTP 404") else "is not Ready"
    goal = "be Ready (Cilium is installed)" if ready else "join the cluster"
    return (
        f"waited {budget}s for server {node} ({where}) to {goal}: it {state} "
        f"({last}); on it run `cloud-init status --long` (k3s install), `journalctl -u k3s`"
        + (" and `kubectl -n kube-system get pods -o wide` (Cilium)" if ready else "")
    )


if __name__ == "__main__":
    environment = dict(os.environ)
    sys.exit(remove(environment) if "SOVEREIGN_REMOVE_NODE" in environment else wait(environment))
