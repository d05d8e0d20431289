"""Secrets audit: wherever a secret flows it is a Pulumi secret, and it is never logged."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pulumi
import pytest

from config import secrets as secret_config
from config.errors import SovereignConfigError
from tools.mockrun import (
    FAKE_HCLOUD_TOKEN,
    FAKE_K3S_KUBECONFIG,
    FAKE_K3S_TOKEN,
    FAKE_PRIVATE_KEY,
    Registration,
    Run,
    evaluate,
)

# Every key the tls provider mints here (cluster CAs, service-account key, API client key) has a
# fake PEM whose body starts with this, whatever the stack (tools.mockrun.fake_pem).
MINTED_KEY = base64.b64encode(b"fake-private-key-omantel").decode()
# client-key-data in the kubeconfig: the base64 of a whole PEM private key.
CLIENT_KEY = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n").decode()[:36]
SECRETS = {
    "k3s token": FAKE_K3S_TOKEN,
    "deployer private key": FAKE_PRIVATE_KEY.splitlines()[1],
    "minted private keys": MINTED_KEY,
    "kubeconfig client key": CLIENT_KEY,
    "hcloud token": FAKE_HCLOUD_TOKEN,
}


def leaves(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, json.dumps(value) if not isinstance(value, str) else value)]


def covered(path: str, secret_paths: set[str]) -> bool:
    return any(
        path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in secret_paths
    )


def exposures(reg: Registration) -> list[str]:
    return [
        f"{reg.type} {reg.name} input {path} carries the {what}"
        for path, text in leaves(reg.inputs)
        for what, secret in SECRETS.items()
        if secret in text and not covered(path, reg.secret_inputs)
    ]


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_every_input_carrying_a_secret_is_a_pulumi_secret(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(stack)
    assert [e for reg in run.registrations for e in exposures(reg)] == []


def test_secrets_actually_flow_where_the_audit_looks(secondary: Run) -> None:
    # Guards the audit itself: if no input carried the secrets, the test above would pass vacuously.
    carried = {
        what
        for reg in secondary.registrations
        for _, text in leaves(reg.inputs)
        for what, secret in SECRETS.items()
        if secret in text
    }
    # CA keys go to cp-1's user_data and the client key to the wait and the provider.
    assert carried == {"k3s token", "minted private keys", "kubeconfig client key"}


def test_hetzner_token_never_enters_the_program(primary: Run) -> None:
    text = json.dumps([r.inputs for r in primary.registrations]) + json.dumps(primary.outputs)
    assert FAKE_HCLOUD_TOKEN not in text


def test_only_the_kubeconfig_output_is_secret_and_it_is(primary: Run) -> None:
    for key, value in primary.outputs.items():
        text = json.dumps(value)
        if any(secret in text for secret in SECRETS.values()) or key == "kubeconfig":
            assert key in primary.secret_outputs, key
    assert FAKE_K3S_KUBECONFIG.splitlines()[0] in primary.outputs["kubeconfig"]


def test_the_wait_gets_the_client_key_as_a_secret_and_logs_only_stderr(primary: Run) -> None:
    wait = primary.one("command:local:Command", "omantel-fsn1-wait")
    assert "environment" in wait.secret_inputs
    assert MINTED_KEY in wait.inputs["environment"]["SOVEREIGN_KEY"]
    assert wait.inputs["logging"] == "stderr"


def test_nothing_secret_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    evaluate("secondary", {"loadBalancer": {"enabled": True}})
    refused = evaluate("primary", {"controlPlane": {"count": 2}})
    logged = caplog.text + str(refused.error)
    for what, secret in SECRETS.items():
        assert secret not in logged, what


# --- `pulumi config set --secret sovereign:...` ---------------------------------------------------

SSH_KEY_BODY = "AAAAC3NzaC1lZDI1NTE5AAAAIM8Dz9mKX0mGZcQ4s3cQhCqfHkQ3qS1f7vQm3b2a1x9C"


def test_a_sovereign_key_marked_secret_is_refused_by_name_and_never_unwrapped() -> None:
    run = evaluate("primary", secret_keys=["access", "region"])
    assert isinstance(run.error, SovereignConfigError)
    assert run.registrations == [], "nothing may be declared with a secret parsed as plain text"
    message = str(run.error)
    for key in ("access", "region"):
        assert (
            f"sovereign:{key} = [redacted]: set as a secret (`pulumi config set --secret`), but "
            "this key is not a secret: the program would unwrap it into plain state" in message
        )
    assert SSH_KEY_BODY not in message
    assert "203.0.113.10" not in message
    assert "fsn1" not in message


def test_secret_values_stay_hidden_even_inside_validator_messages() -> None:
    # The region validator quotes the key and index; the network one the range's rule.
    secret_region = {"role": "primary", "key": "nbg1", "location": "fsn1", "index": 0}
    run = evaluate(
        "primary",
        {"region": secret_region, "network": {"cidr": "10.0.9.1/16"}},
        secret_keys=["region", "network"],
    )
    message = str(run.error)
    assert "sovereign:region = [redacted]" in message
    assert "nbg1" not in message
    assert "10.0.9.1" not in message
    assert "sovereign:region.key = [redacted]: must start with its location '[redacted]'" in message


@pytest.fixture
def mirror_password_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret key registered for one test only (the registry is module data)."""
    monkeypatch.setattr(
        secret_config,
        "SECRET_KEYS",
        {**secret_config.SECRET_KEYS, "mirrorPassword": "the mirror password"},
    )
    return "mirrorPassword"


@pytest.mark.usefixtures("mirror_password_key")
def test_a_designated_secret_key_is_read_only_as_a_pulumi_secret() -> None:
    probe: dict[str, pulumi.Output[str] | None] = {}

    def read() -> None:
        probe["value"] = secret_config.secret_value("mirrorPassword")
        pulumi.export("probe", probe["value"])

    run = evaluate(
        "primary", {"mirrorPassword": "hunter2-mirror"}, on_run=read, secret_keys=["mirrorPassword"]
    )
    assert run.error is None, run.error
    assert run.outputs["probe"] == "hunter2-mirror"
    assert "probe" in run.secret_outputs
    text = json.dumps([r.inputs for r in run.registrations])
    assert "hunter2-mirror" not in text, "the models never saw it, so no resource got it in plain"


@pytest.mark.usefixtures("mirror_password_key")
def test_a_designated_secret_key_set_in_plain_text_is_refused() -> None:
    run = evaluate("primary", {"mirrorPassword": "hunter2-mirror"})
    assert isinstance(run.error, SovereignConfigError)
    message = str(run.error)
    assert (
        "sovereign:mirrorPassword = [redacted]: the mirror password in plain text in the stack "
        "file; set it with `pulumi config set --secret sovereign:mirrorPassword`" in message
    )
    assert "hunter2-mirror" not in message


def test_reading_a_key_that_is_not_designated_secret_is_a_programming_error() -> None:
    with pytest.raises(KeyError, match=r"not in config\.secrets\.SECRET_KEYS"):
        secret_config.secret_value("name")
