"""Read the kubeconfig from the first server inside the same `pulumi up`, as a secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, cast

import pulumi
import pulumi_command as command
import yaml

from config.models import StackConfig
from render.cloudinit import kubeconfig_server
from render.naming import prefix

# Runs on the first server. cloud-init installs k3s; wait for it, then for the API to answer,
# within a bound so a broken boot fails `pulumi up` instead of hanging it. Diagnostics go to
# stderr (logged); stdout carries only the kubeconfig (a secret, never logged).
FETCH_SCRIPT: Final = """\
set -eu
if ! cloud-init status --wait >/dev/null; then
  cloud-init status --long >&2 || true
  echo "cloud-init did not finish cleanly; see /var/log/cloud-init-output.log" >&2
fi
deadline=$(( $(date +%s) + 600 ))
until k3s kubectl get --raw=/readyz >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "k3s API not ready after 10 minutes; journalctl -u k3s on the server tells why" >&2
    exit 1
  fi
  sleep 5
done
cat /etc/rancher/k3s/k3s.yaml
"""


def rewrite_kubeconfig(raw: str, server: str, context: str) -> str:
    """Point k3s's kubeconfig (https://127.0.0.1:6443, names `default`) at `server`."""
    doc = cast(dict[str, Any], yaml.safe_load(raw))
    for cluster in doc["clusters"]:
        cluster["name"] = context
        cluster["cluster"]["server"] = server
    for user in doc["users"]:
        user["name"] = context
    for ctx in doc["contexts"]:
        ctx["name"] = context
        ctx["context"]["cluster"] = context
        ctx["context"]["user"] = context
    doc["current-context"] = context
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeconfigArgs:
    cfg: StackConfig
    host: pulumi.Input[str]
    server_id: pulumi.Input[str]
    private_key: pulumi.Input[str]
    wait_for: list[pulumi.Resource]


class Kubeconfig(pulumi.ComponentResource):
    TYPE: Final = "sovereign:infra:Kubeconfig"

    def __init__(
        self, name: str, args: KubeconfigArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        cfg = args.cfg
        fetch = command.remote.Command(
            f"{name}-fetch",
            connection=command.remote.ConnectionArgs(
                host=args.host,
                user="root",
                private_key=pulumi.Output.secret(args.private_key),
                # A fresh server needs a minute or two before sshd answers.
                dial_error_limit=40,
                per_dial_timeout=15,
            ),
            create=FETCH_SCRIPT,
            # A replaced first server has a new kubeconfig (new CA): read it again.
            triggers=[args.server_id],
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.wait_for,
                additional_secret_outputs=["stdout"],
                custom_timeouts=pulumi.CustomTimeouts(create="20m"),
            ),
        )
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(fetch.stdout, args.host).apply(
                lambda v: rewrite_kubeconfig(v[0], kubeconfig_server(cfg, v[1]), prefix(cfg))
            )
        )
        self.register_outputs({"kubeconfig": self.kubeconfig})
