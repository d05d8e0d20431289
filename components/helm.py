"""The one way this program declares a Helm release."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from render.charts import Chart
from render.manifest_files import project_path
from render.pins import verified


def release(
    resource_name: str,
    *,
    release_name: str,
    chart: Chart,
    namespace: str,
    values: Mapping[str, Any],
    timeout_seconds: int,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
    create_namespace: bool = False,
) -> k8s.helm.v3.Release:
    """A release that waits for readiness within a bound and cleans up a failed first install.

    `atomic` uninstalls a failed first install, so the next `pulumi up` is not blocked by Helm's
    "cannot re-use a name that is still in use"; the timeout makes a pod that cannot start fail
    `pulumi up` with the release name instead of hanging it. The release itself carries
    `depends_on`: a component's own depends_on is not inherited by its children.

    The chart is the vendored package, a local path (no chart repository is contacted), and its
    sha256 is checked against render/charts/vendor.yaml before the release is declared.
    """
    package = verified(chart.package)
    return k8s.helm.v3.Release(
        resource_name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name,
            chart=project_path(package),
            # Helm ignores it for a local package; it states the pin for review and the policy
            # pack (helm-chart-version-pinned). The sha256 above is what holds the bytes.
            version=chart.version,
            namespace=namespace,
            create_namespace=create_namespace,
            values=dict(values),
            timeout=timeout_seconds,
            atomic=True,
            cleanup_on_fail=True,
            skip_await=False,
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
