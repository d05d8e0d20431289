"""Every secret key the config declares is redacted in the plan, the outputs and errors.

Driven by the registry of secret keys (`config.secrets.SECRET_KEYS`) plus the provider token
and the values the program mints (k3s token, CA and client keys, the kubeconfig): a key added
to the registry is covered here without a new test. Each value is distinct and recognisable,
and the first test proves each one really flows into the program, so the others cannot pass
for want of a secret to hide.
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
    Run,
    SecretValue,
    evaluate,
    stack_config,
)
from tools.plan import build_plan
from tools.plan_json import dumps

VALUES = {key: f"sekret-{key}-{'q' * 16}" for key in SECRET_KEYS}
# Everything else secret that a stack holds: the token of its provider and what it mints.
MINTED = {
    "hcloud:token": FAKE_HCLOUD_TOKEN,
    "k3s token": FAKE_K3S_TOKEN,
    "minted private keys": base64.b64encode(b"fake-private-key-omantel").decode(),
    "kubeconfig client key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n").decode()[:36],
}
EVERY = {**{f"sovereign:{k}": v for k, v in VALUES.items()}, **MINTED}
# Turns on every consumer of a secret key.
FEATURES: dict[str, Any] = {
    "backups": {"enabled": True, "bucket": "omantel-etcd"},
    "registryMirror": {"enabled": True, "username": "robot-sovereign"},
}


@pytest.fixture(scope="module")
def secret_run() -> Run:
    run = evaluate("primary", {**FEATURES, **{k: SecretValue(v) for k, v in VALUES.items()}})
    assert run.error is None, run.error
    return run


def test_the_registry_declares_the_credentials_and_each_flows_in(secret_run: Run) -> None:
    assert set(SECRET_KEYS) >= {"backupsAccessKey", "backupsSecretKey", "registryMirrorPassword"}
    for key, value in VALUES.items():
        carriers = [
            r for r in secret_run.registrations if value in json.dumps(r.inputs) and r.secret_inputs
        ]
        assert carriers, f"sovereign:{key} reaches no resource: the tests below would be vacuous"


@pytest.fixture(scope="module")
def plan_text(secret_run: Run) -> str:
    raw = {**stack_config("primary"), **FEATURES, **VALUES}
    return dumps(build_plan(parse(raw, "primary", frozenset(VALUES)), secret_run))


@pytest.mark.parametrize("what", sorted(EVERY))
def test_each_secret_is_redacted_in_the_plan(what: str, plan_text: str) -> None:
    assert EVERY[what] not in plan_text
    assert '"[secret]"' in plan_text


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
