"""What every Kubernetes object of the region carries, set in one place: a stack transformation.

`deleted_with` the cluster: a `pulumi destroy` then deletes the servers without first asking a
dying (or already gone) cluster to uninstall each release, which is slow, hangs on finalizers
and fails when the API no longer answers. The option only skips a delete when the cluster
resource is deleted in the same operation, so an object that a config change removes while
the cluster lives (a vCluster switched off) is still deleted through the API.

A transformation rather than an option passed at each call: it reaches every `kubernetes:`
resource this program declares, including ones added later by any component, and the
components keep passing only their parent and the provider.
"""

from __future__ import annotations

from typing import Final

import pulumi

KUBERNETES_TYPES: Final = "kubernetes:"


def deleted_with_cluster(cluster: pulumi.Resource) -> pulumi.ResourceTransformation:
    """Mark every Kubernetes resource registered from now on `deleted_with` `cluster`."""

    def transform(
        args: pulumi.ResourceTransformationArgs,
    ) -> pulumi.ResourceTransformationResult | None:
        # The provider's type is `pulumi:providers:kubernetes`: it is not an object in the
        # cluster and stays out.
        if not args.type_.startswith(KUBERNETES_TYPES) or args.opts.deleted_with is not None:
            return None
        return pulumi.ResourceTransformationResult(
            props=args.props,
            opts=pulumi.ResourceOptions.merge(
                args.opts, pulumi.ResourceOptions(deleted_with=cluster)
            ),
        )

    return transform


def register(cluster: pulumi.Resource) -> None:
    """Call before the first Kubernetes resource: a transformation sees later registrations."""
    pulumi.runtime.register_stack_transformation(deleted_with_cluster(cluster))
