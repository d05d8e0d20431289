"""Day-2 configuration: the API endpoint, upgrades, etcd backups, server replacement, teardown.

Each object is one field of `StackConfig` (config.models). The S3 credentials are not model
fields: they are read as Pulumi secrets (`require_secret`) so they stay `Output[str]` end to end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import pulumi
from pydantic import AfterValidator, Field, field_validator

from config import grammar
from config.base import ConfigModel, Flag
from config.errors import Problem
from config.secrets import BACKUP_ACCESS_KEY, BACKUP_SECRET_KEY

# Hetzner Object Storage endpoints, https://<location>.your-objectstorage.com.
# source: https://docs.hetzner.com/storage/object-storage/overview (checked 2026-11-27):
# fsn1, nbg1 and hel1 are listed; no ash, hil or sin endpoint exists.
ObjectStorageLocation = Literal["fsn1", "nbg1", "hel1"]
OBJECT_STORAGE_HOST: Final = "{location}.your-objectstorage.com"
ServerName = Literal["cp-1", "cp-2", "cp-3"]


# Five cron fields as k3s's robfig/cron parser takes them (no seconds field, no @-macros here).
_CRON_FIELD = r"[0-9*/,\-]+"
_CRON = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")
# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens, letter or digit at the ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_SNAPSHOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_GROUP = re.compile(r"[a-z][a-z0-9:._-]{0,62}")


class Api(ConfigModel):
    """The Kubernetes API endpoint and the deployer's client certificate."""

    load_balancer: Flag | None = Field(
        default=None,
        description="Hetzner LB on 6443 in front of the servers. Unset: on with 3 servers.",
    )
    public: Flag = Field(
        default=False,
        description="The API load balancer (HA) answers the whole internet on 6443 (Hetzner "
        "firewalls do not filter load balancers). false: no public interface; the deployer "
        "reaches the API over the private network (a runner inside it or a WireGuard peer).",
    )
    load_balancer_type: Literal["lb11", "lb21", "lb31"] = Field(
        default="lb11", description="Hetzner LB type of the API endpoint."
    )
    private_ip: Annotated[str, AfterValidator(grammar.hetzner_address)] = Field(
        default="10.0.1.253", description="API LB's private IP; cp-2/cp-3 join through it."
    )
    client_cert_days: int = Field(
        default=365, ge=30, le=3650, description="Validity of the deployer's client certificate."
    )
    renew_before_days: int = Field(
        default=120,
        ge=1,
        le=3000,
        description="Any `up` this close to expiry issues a new deployer certificate.",
    )
    deployer_group: str = Field(
        default="sovereign:deployers",
        description=(
            "Group (O) of the deployer's certificate, bound to cluster-admin at first boot "
            "(a region created before gets the binding through the API first). Renaming it "
            "revokes every certificate of the old group (docs/security.md)."
        ),
    )

    @field_validator("deployer_group")
    @classmethod
    def _own_group(cls, value: str) -> str:
        # system:masters skips RBAC (a certificate in it cannot be revoked); every other
        # system: group belongs to Kubernetes.
        if value.startswith("system:") or not _GROUP.fullmatch(value):
            raise ValueError(
                "a group of the program's own: 1-63 of a-z, 0-9, ':', '.', '_', '-', starting "
                "with a letter, not system:* (system:masters bypasses RBAC, so it could never "
                "be revoked)"
            )
        return value


class Upgrades(ConfigModel):
    """In-place k3s upgrades through system-upgrade-controller (slot 03)."""

    drain: Flag = Field(
        default=False,
        description="Drain (not only cordon) each server before upgrading it.",
    )
    agent_concurrency: int = Field(
        default=1, ge=1, le=20, description="Workers upgraded at once (after every server)."
    )
    agent_drain: Flag = Field(
        default=True,
        description="Drain (not only cordon) each worker before upgrading it.",
    )


class Backups(ConfigModel):
    """Scheduled k3s etcd snapshots, kept locally and copied to S3-compatible storage."""

    enabled: Flag = Field(default=False, description="Copy etcd snapshots to Object Storage.")
    location: ObjectStorageLocation | None = Field(
        default=None,
        description="Object Storage location; unset: the region's, if it has one.",
    )
    bucket: str | None = Field(default=None, description="Existing bucket (create it first).")
    folder: str | None = Field(default=None, description="Folder in the bucket; unset: region key.")
    schedule: str = Field(
        default="0 */6 * * *", description="Cron schedule of snapshots (k3s, UTC)."
    )
    retention: int = Field(
        default=28, ge=1, le=1000, description="Snapshots kept locally and in the bucket."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not _CRON.fullmatch(value):
            raise ValueError("a five-field cron expression, e.g. '0 */6 * * *'")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET.fullmatch(value):
            raise ValueError("an S3 bucket name: 3-63 of a-z, 0-9, '.' and '-'")
        return value

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and not _FOLDER.fullmatch(value):
            raise ValueError("a folder name: letters, digits, '.', '_', '-' and '/'")
        return value


class Replacement(ConfigModel):
    """The one control-plane server this `up` may replace (with controlPlane.allowReplacement)."""

    server: ServerName | None = Field(
        default=None, description="The only server whose replacing inputs are applied."
    )
    restore_snapshot: str | None = Field(
        default=None,
        description="Single server only: the S3 snapshot the replacement restores at boot.",
    )

    @field_validator("restore_snapshot")
    @classmethod
    def _snapshot(cls, value: str | None) -> str | None:
        if value is not None and not _SNAPSHOT.fullmatch(value):
            raise ValueError("a snapshot name as `k3s etcd-snapshot ls` prints it")
        return value


@dataclass(frozen=True, slots=True)
class BackupCredentials:
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]


def backup_credential_problems(raw: Mapping[str, Any], backups_enabled: bool) -> list[Problem]:
    """With backups on, both S3 keys must be set (config.secrets refuses them in plain text)."""
    if not backups_enabled:
        return []
    return [
        Problem(
            f"sovereign:{key}",
            "(not set)",
            "required with sovereign:backups.enabled: an Object Storage S3 key, set "
            f"with `pulumi config set --secret sovereign:{key}`",
        )
        for key in (BACKUP_ACCESS_KEY, BACKUP_SECRET_KEY)
        if key not in raw
    ]


def load_backup_credentials(enabled: bool) -> BackupCredentials | None:
    """The S3 credentials as secret Outputs; None when backups are off."""
    if not enabled:
        return None
    config = pulumi.Config("sovereign")
    return BackupCredentials(
        access_key=config.require_secret(BACKUP_ACCESS_KEY),
        secret_key=config.require_secret(BACKUP_SECRET_KEY),
    )
