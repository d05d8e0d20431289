"""Run the real `__main__.py` under Pulumi mocks and record everything the engine would see.

Used by the tests and by the offline plan (`./sovereign plan`): same program, same mocks.

A `MockMonitor` subclass records each RegisterResource request as sent: type, name, parent,
dependencies, options and inputs (with which input paths are secret). Stack outputs are read
from the root Stack after every Output has resolved, with their secretness.
"""

from __future__ import annotations

import copy
import json
import runpy
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
FAKE_HCLOUD_TOKEN = "hcloud-token-" + "t" * 51

FAKE_K3S_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZLWRhdGEtc2VjcmV0
"""
FAKE_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "ZmFrZS1kZXBsb3llci1rZXk=\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
FAKE_K3S_TOKEN = "K" * 64


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            secrets.add(path)
            return _unwrap(value.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    dependencies: list[str]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    additional_secret_outputs: list[str]
    provider: str
    inputs: dict[str, Any]
    secret_inputs: set[str]


@dataclass
class Run:
    stack: str
    registrations: list[Registration] = field(default_factory=list[Registration])
    outputs: dict[str, Any] = field(default_factory=dict[str, Any])
    secret_outputs: set[str] = field(default_factory=set[str])
    error: BaseException | None = None
    logs: list[str] = field(default_factory=list[str])

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, got {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def ancestors(self, reg: Registration) -> Iterator[Registration]:
        urns = {r.urn: r for r in self.registrations}
        parent = reg.parent
        while parent in urns:
            yield urns[parent]
            parent = urns[parent].parent


class RecordingMocks(pulumi.runtime.Mocks):
    """Realistic computed outputs per type, so applies downstream really run."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        # Derived from the name, not the call order: registrations run concurrently, and the
        # offline plan must be byte-for-byte stable for golden files and PR diffs.
        n = zlib.crc32(f"{args.typ}::{args.name}".encode()) % 250 + 1
        state = dict(args.inputs)
        typ = args.typ
        if typ == "hcloud:index/primaryIp:PrimaryIp":
            state["ipAddress"] = f"198.51.100.{n}"
        elif typ == "hcloud:index/server:Server":
            state["ipv4Address"] = f"198.51.100.{n}"
            state["status"] = "running"
        elif typ == "hcloud:index/loadBalancer:LoadBalancer":
            state["ipv4"] = f"203.0.113.{n}"
        elif typ == "command:remote:Command":
            state["stdout"] = FAKE_K3S_KUBECONFIG
            state["stderr"] = ""
        elif typ == "random:index/randomPassword:RandomPassword":
            state["result"] = FAKE_K3S_TOKEN
        elif typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyOpenssh"] = FAKE_PRIVATE_KEY
            state["publicKeyOpenssh"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployerKey deployer"
        elif typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {"name": state.get("name"), "status": "deployed"}
        # Hetzner ids are integers; the program converts them with int().
        return (str(zlib.crc32(args.name.encode()) % 10_000_000 + 1000), state)

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return ({}, [])


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run) -> None:
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        secrets: set[str] = set()
        raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        self.run.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=request.custom,
                dependencies=list(request.dependencies),
                protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                provider=request.provider,
                inputs=_unwrap(raw, "", secrets),
                secret_inputs=secrets,
            )
        )
        return response


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)  # type: ignore[arg-type]
        else:
            out[key] = copy.deepcopy(value)
    return out


DELETE: Any = object()


def stack_config(stack: str, directory: Path | None = None) -> dict[str, Any]:
    """The committed `sovereign:*` config of a stack, keys without the namespace.

    `directory` holds the stack files (default: the project root); `plan --all --dir` uses it.
    """
    doc = yaml.safe_load(((directory or ROOT) / f"Pulumi.{stack}.yaml").read_text())
    return {
        key.removeprefix("sovereign:"): value
        for key, value in doc["config"].items()
        if key.startswith("sovereign:")
    }


def evaluate(
    stack: str = "primary",
    overrides: Mapping[str, Any] | None = None,
    raw: Mapping[str, Any] | None = None,
    on_run: Callable[[], None] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Run:
    """Run `__main__.py` for `stack` with its committed config, deep-merged with `overrides`.

    `secrets`: extra `sovereign:*` keys set as secret config (`pulumi config set --secret`).
    """
    run = Run(stack)
    config = dict(raw) if raw is not None else _deep_merge(stack_config(stack), overrides or {})
    all_config = {
        f"sovereign:{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in config.items()
    }
    all_config["hcloud:token"] = FAKE_HCLOUD_TOKEN
    secret_keys = ["hcloud:token", *(f"sovereign:{k}" for k in secrets or {})]
    all_config.update({f"sovereign:{k}": v for k, v in (secrets or {}).items()})
    pulumi.runtime.set_all_config(all_config, secret_keys)
    mocks = RecordingMocks()
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks,
        project="sovereign",
        stack=stack,
        preview=False,
        monitor=RecordingMonitor(mocks, run),
    )
    root = pulumi_settings.get_root_resource()
    assert root is not None

    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")
        if on_run is not None:
            on_run()
        outputs: dict[str, Any] = getattr(root, "outputs", {})
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            run.outputs[key] = _sync_await(out.future())
            if _sync_await(out.is_secret()):
                run.secret_outputs.add(key)

    try:
        _sync_await(run_pulumi_func(program))
    except pulumi.RunError as err:
        run.error = err
    return run
