"""Every secret key the config declares is redacted in the plan, the outputs and errors.

Driven by the registry of secret keys (`config.secrets.SECRET_KEYS`) plus the provider token
and the values the program mints (k3s token, CA and client keys, the kubeconfig): a key added
to the registry is covered here without a new test. Each value is distinct and recognisable,
and the first tests prove where each one goes, so the others cannot pass for want of a secret
to hide: every value but the Hetzner token reaches a resource input; the Hetzner token is the
engine's default hcloud provider's own config (`hcloud:token`, set with --secret) and reaches
no resource, output or log of the program at all.

"State" below is what the engine stores for each registration: its inputs with the secret
paths encrypted. The plan additionally scrubs any known secret string it meets elsewhere, so a
value that leaks plain into a second input is hidden in the plan but not in state; the state
test catches exactly that.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from checks.preflight import parse
from config.secrets import SECRET_KEYS
from tools.mockrun import (
    FAKE_HCLOUD_TOKEN,
    FAKE_K3S_TOKEN,
    Registration,
    Run,
    SecretValue,
    evaluate,
    stack_config,
)
from tools.plan import build_plan
from tools.plan_json import dumps, redact

VALUES = {key: f"sekret-{key}-{'q' * 16}" for key in SECRET_KEYS}
# Everything else secret that a stack holds: the token of its provider and what it mints.
MINTED = {
    "hcloud:token": FAKE_HCLOUD_TOKEN,
    "k3s token": FAKE_K3S_TOKEN,
    "minted private keys": base64.b64encode(b"fake-private-key-omantel").decode(),
    "kubeconfig client key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n").decode()[:36],
}
EVERY = {**{f"sovereign:{k}": v for k, v in VALUES.items()}, **MINTED}
# Read by the engine's default provider from encrypted config, never by the program.
PROVIDER_ONLY = "hcloud:token"
# Turns on every consumer of a secret key.
FEATURES: dict[str, Any] = {
    "backups": {"enabled": True, "bucket": "omantel-etcd"},
    "registryMirror": {"enabled": True, "username": "robot-sovereign"},
    # The autoscaler's Secret: every autoscaled pool's boot, join token and mirror password.
    "workers": {"burst": {"serverType": "cpx32", "autoscaling": {"min": 0, "max": 2}}},
}


@pytest.fixture(scope="module")
def secret_run() -> Run:
    run = evaluate("primary", {**FEATURES, **{k: SecretValue(v) for k, v in VALUES.items()}})
    assert run.error is None, run.error
    return run


def test_the_registry_declares_the_credentials() -> None:
    assert set(SECRET_KEYS) >= {"backupsAccessKey", "backupsSecretKey", "registryMirrorPassword"}


@pytest.mark.parametrize("what", sorted(set(EVERY) - {PROVIDER_ONLY}))
def test_each_secret_flows_into_a_resource_as_a_secret(what: str, secret_run: Run) -> None:
    carriers = [
        r
        for r in secret_run.registrations
        if EVERY[what] in json.dumps(r.inputs) and r.secret_inputs
    ]
    assert carriers, f"{what} reaches no resource: the tests below would be vacuous"


def test_the_hetzner_token_reaches_only_the_engines_provider(secret_run: Run) -> None:
    # Every Hetzner resource goes through the default provider, which the engine configures from
    # the stack's encrypted `hcloud:token`; the program never reads the token itself.
    hetzner = [r for r in secret_run.registrations if r.type.startswith("hcloud:")]
    assert hetzner
    assert all(r.provider == "" for r in hetzner)
    token = EVERY[PROVIDER_ONLY]
    assert not [r.name for r in secret_run.registrations if token in json.dumps(r.inputs)]
    assert token not in json.dumps(secret_run.outputs)


def in_state(reg: Registration) -> str:
    """A registration's inputs as the engine stores them: secret paths encrypted."""
    return json.dumps(redact(reg.inputs, reg.secret_inputs, []))


@pytest.mark.parametrize("what", sorted(EVERY))
def test_each_secret_is_encrypted_in_state(what: str, secret_run: Run) -> None:
    plain = [r.name for r in secret_run.registrations if EVERY[what] in in_state(r)]
    assert plain == [], f"{what} is plain in the state of {plain}"


@pytest.mark.parametrize("what", sorted(EVERY))
def test_each_secret_is_absent_from_the_logs(what: str, secret_run: Run) -> None:
    assert all(EVERY[what] not in line for line in secret_run.logs)


@pytest.fixture(scope="module")
def plan_text(secret_run: Run) -> str:
    raw = {**stack_config("primary"), **FEATURES, **VALUES}
    return dumps(build_plan(parse(raw, "primary", frozenset(VALUES)), secret_run))


def test_the_autoscalers_boot_reaches_it_only_as_a_secret(secret_run: Run, plan_text: str) -> None:
    (config,) = [r for r in secret_run.registrations if r.name.endswith("-hetzner-config")]
    carried = json.dumps(config.inputs)
    # Not vacuous: the join token and the mirror password are really in it.
    assert FAKE_K3S_TOKEN in carried
    assert VALUES["registryMirrorPassword"] in carried
    assert config.secret_inputs == {"stringData"}
    assert FAKE_K3S_TOKEN not in plan_text
    assert VALUES["registryMirrorPassword"] not in plan_text


@pytest.mark.parametrize("what", sorted(EVERY))
def test_each_secret_is_redacted_in_the_plan(what: str, plan_text: str) -> None:
    assert EVERY[what] not in plan_text


@pytest.mark.parametrize("what", sorted(EVERY))
def test_each_secret_is_redacted_in_the_outputs(what: str, secret_run: Run) -> None:
    for key, value in secret_run.outputs.items():
        if EVERY[what] in json.dumps(value):
            assert key in secret_run.secret_outputs, key
    assert "kubeconfig" in secret_run.secret_outputs


@pytest.mark.parametrize("key", sorted(VALUES))
def test_each_secret_key_is_redacted_in_errors(key: str) -> None:
    # Refused elsewhere (two servers): the message lists the problem, never a secret.
    broken = evaluate(
        "primary",
        {
            **FEATURES,
            "controlPlane": {"count": 2},
            **{k: SecretValue(v) for k, v in VALUES.items()},
        },
    )
    assert broken.error is not None
    assert all(value not in str(broken.error) for value in EVERY.values())
    # The key itself in plain text: named, its value redacted.
    plain = evaluate("primary", {**FEATURES, key: VALUES[key]})
    message = str(plain.error)
    assert f"sovereign:{key} = [redacted]: " in message
    assert VALUES[key] not in message
