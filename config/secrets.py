"""The one registry of `sovereign:*` keys that may hold a secret, and how they are read.

Pulumi reports secretness per top-level key (`pulumi config set --secret sovereign:x`, or any
`--secret --path` under it, makes all of `sovereign:x` secret). A secret parsed into the plain
pydantic models would land in plain state the moment a resource takes it, so:

- a key listed here is kept out of the models and read only as an `Output[str]` secret
  (`secret_value`), and it must be set with `--secret`;
- any other key marked secret is refused, naming it, rather than silently unwrapped.

Credentials (registry mirror, backups) get their own top-level key here, e.g.
`registryMirrorPassword`, so the rest of their object stays plain, reviewable config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pulumi

from config.errors import Problem

NAMESPACE: Final = "sovereign"

# The Object Storage S3 credentials of etcd backups (config.day2.Backups).
BACKUP_ACCESS_KEY: Final = "backupsAccessKey"
BACKUP_SECRET_KEY: Final = "backupsSecretKey"
# The registry mirror's password (config.models.RegistryMirror.username is its login).
REGISTRY_PASSWORD_KEY: Final = "registryMirrorPassword"
# The Hetzner API token the cluster itself uses (cloud controller manager, CSI driver,
# autoscaler), stored in the kube-system Secret `hcloud`. Its own key, not the provider's
# `hcloud:token`: it can be a separate token, revoked without locking `pulumi up` out.
HCLOUD_TOKEN_KEY: Final = "hcloudToken"

# key (as users type it, without the namespace) -> what it holds, for error messages.
SECRET_KEYS: Final[Mapping[str, str]] = {
    BACKUP_ACCESS_KEY: "the Object Storage access key of etcd backups",
    BACKUP_SECRET_KEY: "the Object Storage secret key of etcd backups",
    REGISTRY_PASSWORD_KEY: "the registry mirror's password",
    HCLOUD_TOKEN_KEY: "the Hetzner API token of the cluster's own controllers",
}


def secret_problems(
    raw_keys: set[str] | frozenset[str],
    secret_keys: frozenset[str],
    allowed: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Secret keys that may not be secret, and designated secret keys set in plain text."""
    allowed = SECRET_KEYS if allowed is None else allowed
    problems: list[Problem] = []
    for key in sorted(secret_keys - set(allowed)):
        problems.append(
            Problem(
                f"{NAMESPACE}:{key}",
                "[redacted]",
                "set as a secret (`pulumi config set --secret`), but this key is not a secret: "
                "the program would unwrap it into plain state and previews. Set it without "
                f"--secret (`pulumi config rm {NAMESPACE}:{key}`, then set it again)"
                + (f"; keys that may be secret: {', '.join(sorted(allowed))}" if allowed else ""),
            )
        )
    for key in sorted((raw_keys & set(allowed)) - secret_keys):
        problems.append(
            Problem(
                f"{NAMESPACE}:{key}",
                "[redacted]",
                f"{allowed[key]} in plain text in the stack file; set it with "
                f"`pulumi config set --secret {NAMESPACE}:{key}`",
            )
        )
    return problems


def secret_value(key: str) -> pulumi.Output[str] | None:
    """A designated secret key's value, as a Pulumi secret; None when unset."""
    if key not in SECRET_KEYS:
        raise KeyError(f"{NAMESPACE}:{key} is not in config.secrets.SECRET_KEYS")
    return pulumi.Config(NAMESPACE).get_secret(key)
