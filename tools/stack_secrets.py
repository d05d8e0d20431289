"""The passphrase and the committed salt, checked before any command reaches a state backend.

    python -m tools.stack_secrets up|preview|drift STACK [STACK...] [--secrets-provider P]

Exit 0 when the stacks may proceed, 2 with one message per problem otherwise. `./sovereign`
calls it before `pulumi login`/`whoami`/`stack select`, and the fleet (tools/fleet.py) before it
opens the Automation API workspace, so nothing touches the backend with a bad passphrase.

Two failures this refuses, both silent in the Pulumi CLI (pulumi/pulumi
`pkg/secrets/passphrase/manager.go`, `readPassphrase`, read 2026-12-04):
- **An empty passphrase.** The CLI takes PULUMI_CONFIG_PASSPHRASE whenever the variable *exists*
  (`os.LookupEnv`), empty or not. GitHub expands a secret that an environment does not hold to
  `""`, so a missing CI secret would key a new stack with the empty passphrase, and anyone
  reading the state bucket could decrypt the CA keys, the k3s token and the kubeconfig.
- **A stack file without its salt.** The passphrase provider keeps the stack's key derivation
  salt as `encryptionsalt:` in `Pulumi.<stack>.yaml`: `v1:<base64 8-byte salt>:v1:<base64
  nonce>:<base64 AES-256-GCM of "pulumi">` (`NewPassphraseSecretsManager`). Where the file has
  none, the CLI makes a new one from the passphrase at hand: a fresh clone re-keys the stack,
  and secrets set from it no longer decrypt elsewhere. The salt is bound to the passphrase, so
  only the operator who holds it can make it (`./sovereign salt <stack>`); in CI (`CI` set) a
  stack file without one is refused, since a salt CI made would never be committed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import yaml

from tools.stacks import ROOT

PASSPHRASE: Final = "passphrase"
# The parts of a passphrase salt and their decoded sizes (manager.go: an 8-byte salt; the
# check value is sealed with AES-GCM, whose standard nonce is 12 bytes).
SALT: Final = re.compile(r"v1:([A-Za-z0-9+/=]+):v1:([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")
SALT_BYTES: Final = 8
NONCE_BYTES: Final = 12

HOW_TO_SALT: Final = (
    "create it once, where the stack's passphrase is: `./sovereign salt {stack}` (writes "
    "`encryptionsalt:` into Pulumi.{stack}.yaml without touching the state backend), then "
    "commit the file"
)


def in_ci(env: Mapping[str, str]) -> bool:
    """GitHub Actions and most CI systems set CI=true; .ci/run sets it too."""
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def stack_document(stack: str, directory: Path = ROOT) -> Mapping[str, Any]:
    path = directory / f"Pulumi.{stack}.yaml"
    loaded: object = yaml.safe_load(path.read_text()) if path.is_file() else None
    return cast(Mapping[str, Any], loaded) if isinstance(loaded, Mapping) else {}


def secrets_provider(document: Mapping[str, Any], default: str = PASSPHRASE) -> str:
    """The stack's provider: its `secretsprovider:` (a KMS or Vault URL, or `passphrase`)."""
    value = document.get("secretsprovider")
    return str(value) if isinstance(value, str) and value.strip() else default


def passphrase_problem(env: Mapping[str, str]) -> str | None:
    """Why the passphrase at hand must not be used, or None when it may."""
    phrase = env.get("PULUMI_CONFIG_PASSPHRASE")
    phrase_file = env.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")
    if phrase is not None:
        # The CLI reads the variable first whenever it exists (see the module docstring).
        if phrase.strip():
            return None
        return (
            "PULUMI_CONFIG_PASSPHRASE is set but empty. The Pulumi CLI would accept it and "
            "encrypt the stack's secrets (CA keys, k3s token, kubeconfig) with an empty "
            "passphrase; in CI an empty value means the job's environment does not hold the "
            "secret. Set it to the stack's passphrase, or unset it and use "
            "PULUMI_CONFIG_PASSPHRASE_FILE."
        )
    if phrase_file:
        path = Path(phrase_file)
        try:
            content = path.read_text()
        except OSError as err:
            return f"PULUMI_CONFIG_PASSPHRASE_FILE={phrase_file}: cannot be read ({err.strerror})."
        if content.strip():
            return None
        return f"PULUMI_CONFIG_PASSPHRASE_FILE={phrase_file} is empty: put the passphrase in it."
    return (
        "no passphrase: set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to the "
        "stack's passphrase. The state's secrets (CA keys, k3s token, kubeconfig) are encrypted "
        "with it; the Pulumi CLI would otherwise prompt, or fail in CI."
    )


def _decoded_size(text: str) -> int | None:
    try:
        return len(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return None


def salt_problem(stack: str, document: Mapping[str, Any], *, ci: bool) -> str | None:
    """What is wrong with the stack file's `encryptionsalt`, or None.

    Missing is refused in CI only: a person's first `./sovereign up <stack>` creates it.
    """
    salt = document.get("encryptionsalt")
    if salt is None or salt == "":
        if not ci:
            return None
        return (
            f"Pulumi.{stack}.yaml has no encryptionsalt. CI would make a new one from its "
            f"passphrase and never commit it, so every run and every clone would key the "
            f"stack differently; {HOW_TO_SALT.format(stack=stack)}."
        )
    match = SALT.fullmatch(str(salt).strip())
    if (
        match is None
        or _decoded_size(match[1]) != SALT_BYTES
        or _decoded_size(match[2]) != NONCE_BYTES
        or not _decoded_size(match[3])
    ):
        return (
            f"Pulumi.{stack}.yaml: encryptionsalt {str(salt)[:24]!r}... is not a Pulumi "
            f"passphrase salt (v1:<base64 8-byte salt>:v1:<base64 12-byte nonce>:<base64>); "
            f"it was edited or copied wrong. Restore the committed value, or "
            f"{HOW_TO_SALT.format(stack=stack)}."
        )
    return None


def problems(
    stacks: Sequence[str],
    env: Mapping[str, str],
    *,
    directory: Path = ROOT,
    default_provider: str = PASSPHRASE,
) -> list[str]:
    """Every reason these stacks must not reach the backend, passphrase first."""
    ci = in_ci(env)
    found: list[str] = []
    passphrase_stacks: list[str] = []
    for stack in stacks:
        document = stack_document(stack, directory)
        if secrets_provider(document, default_provider) != PASSPHRASE:
            continue  # a KMS/Vault provider keeps no salt in the file and needs no passphrase
        passphrase_stacks.append(stack)
        problem = salt_problem(stack, document, ci=ci)
        if problem:
            found.append(problem)
    if passphrase_stacks:
        problem = passphrase_problem(env)
        if problem:
            found.insert(0, problem)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    provider = PASSPHRASE
    if "--secrets-provider" in args:
        at = args.index("--secrets-provider")
        provider = args[at + 1] if at + 1 < len(args) else PASSPHRASE
        del args[at : at + 2]
    if len(args) < 2:
        sys.stderr.write("usage: python -m tools.stack_secrets OP STACK [STACK...]\n")
        return 2
    op, stacks = args[0], args[1:]
    found = problems(stacks, os.environ, default_provider=provider)
    for problem in found:
        sys.stderr.write(f"sovereign {op}: {problem}\n")
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
