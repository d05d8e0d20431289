"""Run the real `__main__.py` under Pulumi mocks and record everything the engine would see.

Used by the tests and by the offline plan (`./sovereign plan`): same program, same mocks.

A `MockMonitor` subclass records each RegisterResource request as sent: type, name, parent,
dependencies, options and inputs (with which input paths are secret). Stack outputs are read
from the root Stack after every Output has resolved, with their secretness.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import importlib.metadata
import inspect
import json
import logging
import runpy
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.stack import run_pulumi_func

# The SDK's own blocking wait on a future; it has no public one (checked against CHECKED_SDK).
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

from config.secrets import HCLOUD_TOKEN_KEY

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
# The Pulumi SDK whose private parts this module was last checked against (`sdk_problems`);
# requirements.txt pins exactly this version, and a test keeps the three in step.
CHECKED_SDK = "3.272.0"
# RegisterResource request fields the recording monitor reads.
REQUEST_FIELDS = (
    "type",
    "name",
    "parent",
    "custom",
    "remote",
    "dependencies",
    "protect",
    "ignoreChanges",
    "deleteBeforeReplace",
    "deletedWith",
    "additionalSecretOutputs",
    "provider",
    "version",
    "object",
)
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
FAKE_HCLOUD_TOKEN = "hcloud-token-" + "t" * 51
# The cluster's own Hetzner token (sovereign:hcloudToken), distinct from the provider's so a
# leak of either is told apart.
FAKE_CLUSTER_TOKEN = "cluster-token-" + "c" * 50
# What an offline run reads for any other secret a stack file holds encrypted.
STAND_IN_SECRET = "offline-stand-in-" + "s" * 40

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


def fake_pem(kind: str, name: str) -> str:
    """A PEM-shaped stand-in, distinct per resource, so tests can follow each value."""
    body = base64.b64encode(f"fake-{kind.lower().replace(' ', '-')}-{name}".encode()).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        mapping = cast(dict[str, Any], value)
        if mapping.get(SIG_KEY) == SECRET_SIG:
            secrets.add(path)
            return _unwrap(mapping.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in mapping.items()}
    if isinstance(value, list):
        items = cast(list[Any], value)
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(items)]
    return value


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    # A packaged component (constructed by its provider, e.g. kubernetes:yaml/v2:ConfigGroup):
    # a dependency on it is kept as is, never expanded to children.
    remote: bool
    dependencies: list[str]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    # URN of the resource whose deletion in the same operation skips this one's delete.
    deleted_with: str
    # The provider plugin version asked for (the SDK package's own version, unless overridden).
    version: str
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
    # Stacks read through StackReferences (read, not registered: no Registration).
    stack_references: list[str] = field(default_factory=list[str])
    # Secret config keys the run was given a made-up value for (`--secret` values it cannot
    # read): the offline plan says so, as preview and up read the real ones.
    stand_ins: list[str] = field(default_factory=list[str])

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


STACK_REFERENCE = "pulumi:pulumi:StackReference"


class UnknownStackError(pulumi.RunError):
    """A StackReference to a stack the mocks cannot serve, like the engine's unknown stack."""


def stack_outputs(target: str, directory: Path | None = None) -> dict[str, Any]:
    """The fleet outputs the stack `target` would export, from its committed config.

    `org/project/stack` and `project/stack` resolve to `Pulumi.<stack>.yaml` in `directory`:
    the offline stand-in for the backend a StackReference reads.
    """
    from checks.fleet import outputs_of, summary_of
    from checks.preflight import parse

    stack = target.rsplit("/", 1)[-1]
    path = (directory or ROOT) / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise UnknownStackError(
            f"StackReference {target!r}: no stack {stack!r} (offline, stacks are read from "
            f"{path.parent}/Pulumi.<stack>.yaml); set sovereign:fleet.primaryStack"
        )
    raw, secret = offline_secrets(stack_config(stack, directory))
    return outputs_of(summary_of(parse(raw, stack, secret), stack))


class RecordingMocks(pulumi.runtime.Mocks):
    """Realistic computed outputs per type, so applies downstream really run.

    A StackReference reads `references[target]` when given, else the referenced stack's
    committed config in `directory` (`stack_outputs`). `live_servers` is what Hetzner answers for
    this region's servers (hcloud getServers): empty for a new region; tests pass servers with
    labels to stand for a deployed one. `live_record` is the labels of the region's record
    (hcloud getPlacementGroups, components/record.py): None for a region without one.
    """

    def __init__(
        self,
        references: Mapping[str, Mapping[str, Any]] | None = None,
        directory: Path | None = None,
        live_servers: list[dict[str, Any]] | None = None,
        live_record: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.references = dict(references or {})
        self.directory = directory
        self.live_servers = live_servers or []
        self.live_record = live_record

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = cast(dict[str, Any], args.inputs)
        if args.typ == STACK_REFERENCE:
            # The engine's read of another stack: its id is the referenced stack's name.
            target = str(args.resource_id or inputs.get("name"))
            found = self.references.get(target)
            outputs = dict(found) if found is not None else stack_outputs(target, self.directory)
            return (target, {"name": target, "outputs": outputs, "secretOutputNames": []})
        # Derived from the name, not the call order: registrations run concurrently, and the
        # offline plan must be byte-for-byte stable for golden files and PR diffs.
        n = zlib.crc32(f"{args.typ}::{args.name}".encode()) % 250 + 1
        state = dict(inputs)
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
            state["privateKeyPem"] = fake_pem("PRIVATE KEY", args.name)
            state["publicKeyFingerprintSha256"] = f"SHA256:fp-{args.name}"
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            state["certPem"] = fake_pem("CERTIFICATE", args.name)
        elif typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = fake_pem("CERTIFICATE REQUEST", args.name)
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            state["certPem"] = fake_pem("CERTIFICATE", args.name)
        elif typ == "random:index/randomId:RandomId":
            state["hex"] = f"{zlib.crc32(args.name.encode()):08x}"
        elif typ == "kubernetes:helm.sh/v3:Release":
            # Helm reports the chart version it deployed.
            state["status"] = {
                "name": state.get("name"),
                "status": "deployed",
                "version": state.get("version"),
            }
        # Hetzner ids are integers; the program converts them with int().
        return (str(zlib.crc32(args.name.encode()) % 10_000_000 + 1000), state)

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "hcloud:index/getServers:getServers":
            return ({"id": "servers", "servers": self.live_servers}, [])
        if args.token == "hcloud:index/getPlacementGroups:getPlacementGroups":
            # The region's record (components/record.py): one empty spread group, or none.
            groups: list[dict[str, Any]] = (
                []
                if self.live_record is None
                else [
                    {
                        "id": 4242,
                        "name": "record",
                        "type": "spread",
                        "servers": [],
                        "labels": dict(self.live_record),
                    }
                ]
            )
            return ({"id": "placement-groups", "placementGroups": groups}, [])
        return ({}, [])


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run) -> None:
        super().__init__(mocks)
        self.run = run

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.type == STACK_REFERENCE:
            self.run.stack_references.append(request.id)
        # The SDK's MockMonitor methods carry no annotations.
        monitor: Any = super()
        return monitor.ReadResource(request)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        monitor: Any = super()
        response = monitor.RegisterResource(request)
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
                remote=request.remote,
                dependencies=list(request.dependencies),
                protect=bool(request.protect),
                ignore_changes=list(request.ignoreChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                deleted_with=request.deletedWith,
                version=request.version,
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
            out[key] = _deep_merge(out[key], cast(Mapping[str, Any], value))
        else:
            out[key] = copy.deepcopy(over[key])
    return out


DELETE: Any = object()


@dataclass(frozen=True)
class SecretValue:
    """A config value set with `pulumi config set --secret` (for `evaluate` overrides)."""

    value: str


def _is_secure(value: object) -> bool:
    """A stack file's encrypted value: `{secure: <ciphertext>}`."""
    return isinstance(value, Mapping) and set(cast(Mapping[str, object], value)) == {"secure"}


def offline_secrets(raw: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """A stack file's config as an offline run reads it: each designated secret key
    (config.secrets.SECRET_KEYS) holding a `secure:` value, which only the operator's
    passphrase decrypts, gets a made-up secret instead (`SecretValue`); returns the config and
    those keys. Any other encrypted value stays as it is, for the config check to name."""
    from config.secrets import SECRET_KEYS

    encrypted = frozenset(k for k, v in raw.items() if k in SECRET_KEYS and _is_secure(v))
    config = {
        key: SecretValue(FAKE_CLUSTER_TOKEN if key == HCLOUD_TOKEN_KEY else STAND_IN_SECRET)
        if key in encrypted
        else value
        for key, value in raw.items()
    }
    return config, encrypted


def stack_config(stack: str, directory: Path | None = None) -> dict[str, Any]:
    """The committed `sovereign:*` config of a stack, keys without the namespace.

    `directory` holds the stack files (default: the project root); `plan --all --dir` uses it.
    """
    from tools.stack_file import read_stack_file

    doc = read_stack_file((directory or ROOT) / f"Pulumi.{stack}.yaml")
    return {
        key.removeprefix("sovereign:"): value
        for key, value in cast(dict[str, Any], doc.get("config") or {}).items()
        if key.startswith("sovereign:")
    }


def sdk_problems() -> list[str]:
    """The SDK's private parts this module relies on, each one that is not where it was."""
    problems: list[str] = []

    def need(present: bool, what: str) -> None:
        if not present:
            problems.append(what)

    need(
        callable(getattr(pulumi_resource, "_get_stack_trace", None)),
        "pulumi.runtime.resource._get_stack_trace (the stack walk a mock run skips)",
    )
    need(
        callable(getattr(getattr(pulumi_settings, "ROOT", None), "set", None)),
        "pulumi.runtime.settings.ROOT (the root resource, reset before each run)",
    )
    settings = getattr(pulumi_settings, "SETTINGS", None)
    need(
        hasattr(settings, "lock")
        and callable(getattr(getattr(settings, "outputs", None), "clear", None)),
        "pulumi.runtime.settings.SETTINGS.lock and .outputs (output tasks a failed run leaves)",
    )
    need(
        all(
            callable(getattr(pulumi_mocks.MockMonitor, m, None))
            for m in ("RegisterResource", "ReadResource")
        ),
        "pulumi.runtime.mocks.MockMonitor.RegisterResource/ReadResource (recorded per call)",
    )
    need(
        callable(_sync_await) and callable(run_pulumi_func),
        "sync_await._sync_await, stack.run_pulumi_func",
    )
    need(hasattr(source_pb2, "StackTrace"), "pulumi.runtime.proto.source_pb2.StackTrace")
    fields = resource_pb2.RegisterResourceRequest.DESCRIPTOR.fields_by_name
    missing = [name for name in REQUEST_FIELDS if name not in fields]
    need(not missing, f"RegisterResourceRequest fields {', '.join(missing)}")
    return problems


def sdk_check() -> str:
    """'' when the SDK is the checked one with its internals in place; else what to do."""
    installed = importlib.metadata.version("pulumi")
    problems = sdk_problems()
    if installed == CHECKED_SDK and not problems:
        return ""
    moved = "; ".join(problems) or "none found missing, but nothing was checked against it"
    return (
        f"tools/mockrun.py was checked against the Pulumi SDK {CHECKED_SDK}, and pulumi "
        f"{installed} is installed. Moved or missing: {moved}. Check mockrun against pulumi "
        f"{installed}, then set CHECKED_SDK and the pin in requirements.txt to it."
    )


def evaluate(
    stack: str = "primary",
    overrides: Mapping[str, Any] | None = None,
    raw: Mapping[str, Any] | None = None,
    on_run: Callable[[], None] | None = None,
    secret_keys: Sequence[str] = (),
    references: Mapping[str, Mapping[str, Any]] | None = None,
    directory: Path | None = None,
    live_servers: list[dict[str, Any]] | None = None,
    live_record: Mapping[str, str] | None = None,
) -> Run:
    """Run `__main__.py` for `stack` with its committed config, deep-merged with `overrides`.

    `secret_keys` (without the namespace) are marked secret, as `pulumi config set --secret` does.
    `references`: outputs served to StackReferences by stack name; other references read the
    committed config of the stack in `directory` (default: the project root).
    """
    run = Run(stack)
    config = dict(raw) if raw is not None else _deep_merge(stack_config(stack), overrides or {})
    all_config = {
        f"sovereign:{k}": json.dumps(v) if not isinstance(v, str) else v
        for k, v in config.items()
        if not isinstance(v, SecretValue)
    }
    all_config["hcloud:token"] = FAKE_HCLOUD_TOKEN
    # Keys in `secret_keys`, and values given as SecretValue, stand for
    # `pulumi config set --secret`.
    secret = ["hcloud:token", *(f"sovereign:{key}" for key in secret_keys)]
    # Every stack needs the cluster's token, which no committed stack file can carry (a
    # `secure:` value needs the operator's passphrase): the runs get a fake one, as
    # `pulumi config set --secret` sets it, unless the test sets or deletes it itself.
    if HCLOUD_TOKEN_KEY not in config and (overrides or {}).get(HCLOUD_TOKEN_KEY) is not DELETE:
        all_config[f"sovereign:{HCLOUD_TOKEN_KEY}"] = FAKE_CLUSTER_TOKEN
        secret.append(f"sovereign:{HCLOUD_TOKEN_KEY}")
    for key, value in config.items():
        if isinstance(value, SecretValue):
            all_config[f"sovereign:{key}"] = value.value
            secret.append(f"sovereign:{key}")
            if value.value == STAND_IN_SECRET:
                run.stand_ins.append(f"sovereign:{key}")
    run.stand_ins += [
        key
        for key in ("hcloud:token", f"sovereign:{HCLOUD_TOKEN_KEY}")
        if all_config.get(key) in (FAKE_HCLOUD_TOKEN, FAKE_CLUSTER_TOKEN)
    ]
    pulumi.runtime.set_all_config(all_config, secret)
    mocks = RecordingMocks(references, directory, live_servers, live_record)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks,
        project="sovereign",
        stack=stack,
        preview=False,
        logger=_recording_logger(run),
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

    walk = getattr(pulumi_resource, "_get_stack_trace", None)
    try:
        if walk is not None:
            pulumi_resource._get_stack_trace = _no_stack_trace  # pyright: ignore[reportPrivateUsage]
        _sync_await(run_pulumi_func(program))
    except pulumi.RunError as err:
        run.error = err
    finally:
        if walk is not None:
            pulumi_resource._get_stack_trace = walk  # pyright: ignore[reportPrivateUsage]
        _cancel_leftover_tasks(failed=run.error is not None)
    return run


class _LogRecorder(logging.Handler):
    def __init__(self, run: Run) -> None:
        super().__init__(logging.INFO)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        self.run.logs.append(f"{record.levelname.lower()}: {record.getMessage()}")


def _recording_logger(run: Run) -> logging.Logger:
    """The program's `pulumi.log` messages go into `run.logs`, not to the terminal: the caller
    shows them (the plan once per fleet, not once per stack), as the CLI would under the stack."""
    logger = logging.Logger(f"sovereign.mockrun.{run.stack}", logging.INFO)
    logger.addHandler(_LogRecorder(run))
    return logger


def _no_stack_trace() -> source_pb2.StackTrace:
    """What a mock run sends instead of the SDK's Python stack walk of every registration.

    The engine shows those source positions in its diagnostics; the recording monitor never
    reads them, and walking the stack was a sixth of every mock run (measured: 0.40 s -> 0.34 s
    for the secondary), which the offline plan and every test pay.
    """
    return source_pb2.StackTrace()


def _cancel_leftover_tasks(*, failed: bool) -> None:
    """Forget what a failed run left behind (say, resources gated on a failed fleet check).

    The mocks reuse one event loop and the SDK's global set of output tasks, which `set_mocks`
    does not reset: a task left over would be awaited by the next run, which would then fail
    with this run's error.
    """
    loop = asyncio.get_event_loop()
    leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
    # The SDK's registry of live Outputs (a private attribute of its settings object).
    settings: Any = pulumi_settings.SETTINGS
    with settings.lock:
        settings.outputs.clear()
    # Outputs of the resources a failed run never registered hold coroutines nothing will
    # await (`Output.future`, `Output.is_known`); left to the garbage collector, each becomes a
    # "coroutine ... was never awaited" RuntimeWarning in whichever test runs next. Closing
    # them here ends them where they were abandoned.
    if failed:
        for obj in gc.get_objects():
            if (
                inspect.iscoroutine(obj)
                and obj.__qualname__.startswith("Output.")
                and inspect.getcoroutinestate(obj) == inspect.CORO_CREATED
            ):
                obj.close()
    # The failed run's error is in `Run.error`; the futures that also held it are not news.
    loop.set_exception_handler(_quiet_run_errors)


def _quiet_run_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not isinstance(context.get("exception"), pulumi.RunError):
        loop.default_exception_handler(context)
