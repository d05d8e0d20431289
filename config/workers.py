"""Worker pools: named groups of k3s agents next to the control plane (`sovereign:workers`).

Each pool is one `WorkerPool` component (components/workers.py). Where a type is sold, how many
servers fit a spread group and whether some pod tolerates a pool's taints are judged across keys
in checks/workers.py; this module checks each value on its own.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from config import grammar
from config.base import ConfigModel, Flag
from config.errors import FieldError
from config.server_types import CATALOGUE as SERVER_TYPES

# A pool's name goes into server names (`<sovereign>-<region>-<pool>-<n>`, at most 63 characters
# for Hetzner and as a node name) and into the `openova.io/pool` label value.
POOL_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$")
# Hetzner allows at most 10 servers in one spread placement group.
# source: https://docs.hetzner.com/cloud/placement-groups/overview (Limits, checked 2026-12-04);
# the same number is hcloud-go's error `placement_error` text and kube-hetzner's validation
# (mysticaltech/terraform-hcloud-kube-hetzner variables.tf, agent_nodepools, checked 2026-12-04).
SPREAD_GROUP_MAX: Final = 10
# Kubernetes label keys: an optional DNS-subdomain prefix and a name of at most 63 characters.
_LABEL_KEY: Final = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Prefixes the program sets itself (region, role, pool) or the kubelet refuses to self-assign
# (NodeRestriction: only kubelet.kubernetes.io/ and node.kubernetes.io/ under kubernetes.io).
RESERVED_LABEL_PREFIXES: Final = (
    "openova.io/",
    "catalyst.openova.io/",
    "kubernetes.io/",
    "k8s.io/",
    "node-role.kubernetes.io/",
)
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


def _label_key(value: str) -> str:
    if len(value) > 253 or not _LABEL_KEY.fullmatch(value):
        raise ValueError("a Kubernetes label key such as workload or example.com/tier")
    if any(value.startswith(p) or f".{p}" in value for p in RESERVED_LABEL_PREFIXES):
        raise ValueError(
            f"a label key outside {', '.join(RESERVED_LABEL_PREFIXES)}: the program sets those "
            "itself (region, role, pool) or the kubelet may not set them on its own node"
        )
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(grammar.label_value)]


class Taint(ConfigModel):
    """A Kubernetes node taint every server of the pool registers with (k3s `node-taint`)."""

    key: LabelKey = Field(description="Taint key.")
    value: str = Field(default="", description="Taint value (may be empty).")
    effect: TaintEffect = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return value if value == "" else grammar.label_value(value)

    @property
    def flag(self) -> str:
        """`key=value:Effect` (or `key:Effect`), as k3s `node-taint` and kubectl take it."""
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


class Toleration(ConfigModel):
    """A toleration of the pod it is set on (Kubernetes `tolerations[]`)."""

    key: LabelKey = Field(description="Taint key tolerated.")
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal (key and value) or Exists (any value)."
    )
    value: str = Field(default="", description="Taint value, with operator Equal.")
    effect: TaintEffect | None = Field(default=None, description="Unset: every effect.")

    def manifest(self) -> dict[str, str]:
        doc = {"key": self.key, "operator": self.operator}
        if self.operator == "Equal":
            doc["value"] = self.value
        if self.effect is not None:
            doc["effect"] = self.effect
        return doc


class Autoscaling(ConfigModel):
    """Bounds of a pool that cluster-autoscaler sizes (a node group of its Hetzner provider).

    `min` servers exist at all times (the autoscaler runs with --enforce-node-group-min-size);
    more are created while pods stay Pending for want of room, up to `max`, and removed (drained
    first, by the autoscaler) once they have stood underused.
    """

    min: int = Field(ge=0, le=100, description="Fewest servers (0: the pool may be empty).")
    max: int = Field(ge=1, le=100, description="Most servers the autoscaler may create.")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min > self.max:
            raise FieldError("min", f"at most autoscaling.max ({self.max})")
        return self


class WorkerPool(ConfigModel):
    """One named pool of k3s agents: same server type, labels and taints."""

    server_type: str = Field(
        description="Hetzner server type sold in the region's location (config/data catalogue)."
    )
    count: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Servers in the pool, created by the program (unset: 1); not with "
        "`autoscaling`.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="{min, max}: cluster-autoscaler creates and deletes the pool's servers "
        "between the two (slot 06); the program then creates none itself. Unset: `count` "
        "servers, created by the program.",
    )
    image: str | None = Field(
        default=None, description="Hetzner image name; unset: controlPlane.image."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict[str, str],
        description="Kubernetes node labels (openova.io/pool=<name> is always set).",
    )
    taints: list[Taint] = Field(
        default_factory=list[Taint],
        max_length=10,
        description="Node taints; some pod the program deploys must tolerate each.",
    )
    location: str | None = Field(
        default=None,
        description="Unset or the region's own location: a pool lives where the region lives "
        "(a Hetzner volume attaches only to a server in its location; a pool elsewhere is a "
        "region of its own).",
    )
    placement_group: Flag = Field(
        default=True,
        description=f"A spread placement group of the pool's own (Hetzner: at most "
        f"{SPREAD_GROUP_MAX} servers per group); false: servers may share a host.",
    )

    @field_validator("server_type")
    @classmethod
    def _server_type(cls, value: str) -> str:
        why = SERVER_TYPES.unknown(value)
        if why is not None:
            raise ValueError(why)
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]+-[0-9][0-9.]*", value):
            raise ValueError("a Hetzner image name, e.g. ubuntu-24.04")
        return value

    @model_validator(mode="after")
    def _one_owner(self) -> WorkerPool:
        # One owner per server: Pulumi would recreate at every `up` a server the autoscaler
        # removed, and the autoscaler does not count servers it did not create.
        if self.autoscaling is not None and self.count is not None:
            raise FieldError(
                "count",
                "unset on an autoscaled pool: cluster-autoscaler creates and deletes its "
                "servers between autoscaling.min and autoscaling.max; remove count, or remove "
                "autoscaling to have the program create count servers",
            )
        return self

    @property
    def static_count(self) -> int:
        """The servers the program creates itself: none for an autoscaled pool."""
        if self.autoscaling is not None:
            return 0
        return self.count if self.count is not None else 1

    @property
    def most_servers(self) -> int:
        """The most servers the pool can have at once."""
        return self.autoscaling.max if self.autoscaling is not None else self.static_count


def pool_name(value: str) -> str:
    if not POOL_NAME.fullmatch(value):
        raise ValueError(
            "a pool name of 2-16 lower-case letters, digits or '-', starting with a letter and "
            "ending with a letter or digit (it goes into server names and a label value)"
        )
    return value


PoolName = Annotated[str, AfterValidator(pool_name)]
