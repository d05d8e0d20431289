"""`./sovereign plan`: offline, reviewable previews of every stack (no Pulumi CLI, no token).

    plan STACK [--json FILE] [--dir DIR]   JSON plan of one stack (default plans/STACK.json,
                                           `-` = stdout) and a summary on the terminal
    plan --diff OLD.json NEW.json          Markdown diff of two plans (OLD may be `{}`)
    plan --diff REF STACK                  the same, the stack at git REF vs the working tree
    plan --all [--dir DIR] [--jobs N]      fleet invariants over every Pulumi.*.yaml stack
    plan --all --live [--dir DIR]          the same over the deployed stacks' outputs

The plan runs the real `__main__.py` under the tests' recording mocks (`tools.mockrun`): every
resource with its parent, dependencies, options and inputs, each secret input replaced by
"[secret]"; each server's cloud-init rendered with the k3s token hidden and its worst-case size
against Hetzner's cap; the stack outputs. Output is byte-for-byte stable (keys sorted,
resources by URN), so golden files and PR diffs only move when the program does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from config.pss import LABEL_PREFIX as PSS_PREFIX
from config.pss import MODES as PSS_MODES
from tools.plan_json import (
    SECRET,
    as_dict,
    as_list,
    dumps,
    normalise,
    redact,
    scrub,
    short_type,
    strings,
)
from tools.stacks import ROOT, PlanError, evaluate_stack, require_stack

if TYPE_CHECKING:
    from config.models import StackConfig
    from tools.mockrun import Registration, Run

PLAN_VERSION: Final = 1
SERVER_TYPE: Final = "hcloud:index/server:Server"
NAMESPACE_TYPE: Final = "kubernetes:core/v1:Namespace"
RELEASE_TYPE: Final = "kubernetes:helm.sh/v3:Release"
# A secret string shorter than this is not searched for elsewhere (too many false hits).
MIN_SCRUB_LENGTH: Final = 12


def _provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`."""
    return reference.rsplit("::", 1)[0] if reference else ""


def plan_boot(cfg: StackConfig, node: int, api_public_ip: str | None, secret: str) -> Any:
    """The `ServerBoot` the program gives server `node` of a new region, secrets as `secret`."""
    from components.control_plane import boot_mode
    from render.cloudinit import CA_FILES, ServerBoot

    mode = boot_mode(cfg, node, {})
    files = dict.fromkeys(CA_FILES, secret)
    return ServerBoot(
        mode=mode,
        api_public_ip=api_public_ip,
        ca_files=files if mode != "join" else {},
        restore_credentials=(secret, secret) if mode == "restore" else None,
    )


def _servers(cfg: StackConfig, run: Run, names: Mapping[str, str]) -> list[dict[str, Any]]:
    from render.cloudinit import (
        K3S_TOKEN_LENGTH,
        USER_DATA_CAP,
        WORST_CASE_IPV4,
        render_user_data,
        worst_case_boot,
    )

    by_private_ip: dict[str, Registration] = {}
    for reg in run.of_type(SERVER_TYPE):
        networks = as_list(reg.inputs.get("networks")) or []
        first = as_dict(networks[0]) if networks else None
        if first is not None and isinstance(first.get("ip"), str):
            by_private_ip[first["ip"]] = reg
    public_ips = as_list(run.outputs.get("controlPlanePublicIps")) or []
    api_ip = run.outputs.get("apiLoadBalancerIp")
    api_ip = str(api_ip) if api_ip is not None else None
    servers: list[dict[str, Any]] = []
    for node, private_ip in enumerate(cfg.control_plane_ips):
        reg = by_private_ip.get(private_ip)
        public_ip = str(public_ips[node]) if node < len(public_ips) else WORST_CASE_IPV4
        user_data = render_user_data(
            cfg, node, public_ip, SECRET, plan_boot(cfg, node, api_ip, SECRET)
        )
        worst = render_user_data(
            cfg, node, WORST_CASE_IPV4, "x" * K3S_TOKEN_LENGTH, worst_case_boot(cfg, node)
        )
        worst_bytes = len(worst.encode())
        servers.append(
            {
                "node": node + 1,
                "name": names.get(reg.urn) if reg is not None else None,
                "serverName": reg.inputs.get("name") if reg is not None else None,
                "privateIp": private_ip,
                "publicIp": public_ip,
                "userData": user_data,
                "worstCaseBytes": worst_bytes,
                "capBytes": USER_DATA_CAP,
                "headroomBytes": USER_DATA_CAP - worst_bytes,
                "withinCap": worst_bytes <= USER_DATA_CAP,
            }
        )
    return servers


def _workers(cfg: StackConfig) -> list[dict[str, Any]]:
    """Per worker pool: the one agent boot all its servers share, and its worst-case size."""
    from render.autoscaler import node_group
    from render.cloudinit import K3S_TOKEN_LENGTH, USER_DATA_CAP, render_agent_user_data

    pools: list[dict[str, Any]] = []
    for pool, spec in sorted(cfg.workers.items()):
        mirror = cfg.registry_mirror.username is not None
        worst = render_agent_user_data(
            cfg, pool, "x" * K3S_TOKEN_LENGTH, "x" * 128 if mirror else None
        )
        worst_bytes = len(worst.encode())
        pools.append(
            {
                "pool": pool,
                "serverType": spec.server_type,
                # Servers the program creates; an autoscaled pool's are the autoscaler's.
                "count": spec.static_count,
                "autoscaling": None
                if spec.autoscaling is None
                else {
                    "min": spec.autoscaling.min,
                    "max": spec.autoscaling.max,
                    "nodeGroup": node_group(cfg, pool),
                    "by": "cluster-autoscaler (slot 06)",
                },
                "userData": render_agent_user_data(cfg, pool, SECRET, SECRET if mirror else None),
                "worstCaseBytes": worst_bytes,
                "capBytes": USER_DATA_CAP,
                "headroomBytes": USER_DATA_CAP - worst_bytes,
                "withinCap": worst_bytes <= USER_DATA_CAP,
            }
        )
    return pools


def _vclusters(resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Namespaces carrying Pod Security labels, with the Helm release installed into each."""
    from render.vcluster import ROLE_LABEL as VCLUSTER_ROLE_LABEL

    releases: dict[str, list[str]] = {}
    for res in resources:
        if res["type"] == RELEASE_TYPE:
            inputs = as_dict(res["inputs"]) or {}
            releases.setdefault(str(inputs.get("namespace")), []).append(str(inputs.get("name")))
    found: list[dict[str, Any]] = []
    for res in resources:
        if res["type"] != NAMESPACE_TYPE:
            continue
        metadata = as_dict((as_dict(res["inputs"]) or {}).get("metadata")) or {}
        labels = as_dict(metadata.get("labels")) or {}
        if not any(str(key).startswith(PSS_PREFIX) for key in labels):
            continue
        namespace = str(metadata.get("name"))
        found.append(
            {
                "vcluster": labels.get(VCLUSTER_ROLE_LABEL, namespace),
                "namespace": namespace,
                "resource": res["name"],
                "releases": sorted(releases.get(namespace, [])),
                "podSecurity": {
                    mode: {
                        "level": labels.get(f"{PSS_PREFIX}{mode}"),
                        "version": labels.get(f"{PSS_PREFIX}{mode}-version"),
                    }
                    for mode in PSS_MODES
                },
            }
        )
    return sorted(found, key=lambda v: (str(v["vcluster"]), str(v["namespace"])))


# Resource types that are Kubernetes objects the program declares itself (not Helm releases,
# providers or manifests fetched by URL).
NOT_OBJECTS: Final = (RELEASE_TYPE, "kubernetes:yaml/v2:ConfigGroup")


def declared_objects(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """The Kubernetes objects the program declares, as the provider receives them."""
    return [
        (f"resource {reg.name}", normalise(reg.inputs))
        for reg in sorted(run.registrations, key=lambda r: r.urn)
        if reg.custom and reg.type.startswith("kubernetes:") and reg.type not in NOT_OBJECTS
    ]


def _releases(cfg: StackConfig, run: Run) -> tuple[list[dict[str, Any]], list[str]]:
    """Each release rendered by Helm's engine (objects by kind, images) and every problem found
    on the rendered and declared objects."""
    from checks.rendered import release_images, render_releases, rendered_problems
    from render.helm import RenderError
    from render.manifests import kinds

    try:
        rendered = render_releases(cfg)
    except RenderError as err:
        raise PlanError(f"cannot render the charts: {err}") from None
    releases = [
        {
            "slot": release.spec.slot,
            "name": release.spec.name,
            "namespace": release.spec.namespace,
            "chart": release.spec.chart.name,
            "version": release.spec.chart.version,
            "objects": len(release.objects),
            "kinds": kinds(release.objects),
            "images": release_images(cfg, release),
        }
        for release in rendered
    ]
    problems = rendered_problems(cfg, rendered, declared_objects(run))
    return releases, [problem.render().strip().removeprefix("- ") for problem in problems]


@dataclass(frozen=True, slots=True)
class WaveNode:
    """One registered resource as the deploy order sees it."""

    key: str  # URN: names repeat across component types
    name: str
    custom: bool
    before: tuple[str, ...]  # keys it waits for: dependencies, parent, provider


def deploy_waves(nodes: Sequence[WaveNode]) -> list[list[str]]:
    """Topological levels of the custom resources (and providers) in deploy order.

    Components do no work of their own: they take no wave, but pass on what they wait for
    (their parent's and dependencies' waits) to their children. Everything in one wave can run
    in parallel; each resource waits only for the earlier waves it needs.
    """
    by_key = {node.key: node for node in nodes}
    done: dict[str, int] = {}
    visiting: set[str] = set()

    def finish(key: str) -> int:
        if key in done:
            return done[key]
        if key in visiting:
            raise PlanError(f"dependency cycle through {by_key[key].name}")
        visiting.add(key)
        node = by_key[key]
        ready = max((finish(k) for k in node.before if k in by_key), default=0)
        visiting.discard(key)
        done[key] = ready + 1 if node.custom else ready
        return done[key]

    waves: dict[int, list[str]] = {}
    for node in nodes:
        if node.custom:
            waves.setdefault(finish(node.key), []).append(node.name)
    return [sorted(waves[level]) for level in sorted(waves)]


def build_plan(cfg: StackConfig, run: Run) -> dict[str, Any]:
    """The JSON plan of one evaluated stack: no secret value anywhere in it."""
    from render.certificates import certificate_table

    regs = sorted(run.registrations, key=lambda reg: reg.urn)
    names = {reg.urn: reg.name for reg in regs}
    secret_values: list[Any] = []
    public_strings: set[str] = set()
    resources: list[dict[str, Any]] = []
    for reg in regs:
        inputs = normalise(redact(reg.inputs, reg.secret_inputs, secret_values))
        public_strings.update(strings(inputs))
        provider = _provider_urn(reg.provider)
        resources.append(
            {
                "urn": reg.urn,
                "type": reg.type,
                "name": reg.name,
                "custom": reg.custom,
                "parent": names.get(reg.parent),
                "parentUrn": reg.parent if reg.parent in names else None,
                "provider": names.get(provider, provider.rsplit("::", 1)[-1] or None),
                "dependencies": sorted({names[d] for d in reg.dependencies if d in names}),
                "protect": reg.protect,
                "ignoreChanges": sorted(reg.ignore_changes),
                "deleteBeforeReplace": reg.delete_before_replace,
                "deletedWith": names.get(reg.deleted_with),
                "additionalSecretOutputs": sorted(reg.additional_secret_outputs),
                "secretInputs": sorted(reg.secret_inputs),
                "inputs": inputs,
            }
        )
    outputs: dict[str, Any] = {}
    for key, value in sorted(run.outputs.items()):
        if key in run.secret_outputs:
            secret_values.append(value)
            outputs[key] = SECRET
        else:
            outputs[key] = normalise(value)
            public_strings.update(strings(outputs[key]))
    releases, problems = _releases(cfg, run)
    from render.cloudinit import k3s_downloads
    from render.pins import unpinned, unpinned_images

    # Downloads and images not pinned yet: warnings here, refused by `--strict`.
    unpinned_list = unpinned(list(k3s_downloads(cfg))) + unpinned_images(
        {f"slot {r['slot']:02d} {r['name']}": list(r["images"]) for r in releases}
    )
    plan: dict[str, Any] = {
        "version": PLAN_VERSION,
        "stack": run.stack,
        "region": {
            "role": cfg.region.role,
            "key": cfg.region.key,
            "index": cfg.region.index,
            "location": cfg.region.location,
            "podCidr": cfg.pod_cidr,
            "serviceCidr": cfg.service_cidr,
            "vclusters": outputs.get("vclusters", []),
        },
        "resources": resources,
        "servers": _servers(cfg, run, names),
        "workers": _workers(cfg),
        "releases": releases,
        "problems": problems,
        "unpinned": unpinned_list,
        "vclusters": _vclusters(resources),
        "certificates": certificate_table(cfg),
        "waves": deploy_waves(
            [
                WaveNode(
                    reg.urn,
                    reg.name,
                    reg.custom,
                    (*reg.dependencies, reg.parent, _provider_urn(reg.provider)),
                )
                for reg in regs
            ]
        ),
        "outputs": outputs,
    }
    # A secret value that also shows up inside some other, non-secret string (say, a token
    # pasted into a label) is replaced there too. Values that are public elsewhere in the
    # plan (an IP inside a secret connection) are left alone.
    hidden = {s for s in strings(secret_values) if len(s) >= MIN_SCRUB_LENGTH}
    return scrub(plan, frozenset(hidden - public_strings))


# --------------------------------------------------------------------------------------------
# The terminal summary


def _tree_lines(resources: Sequence[Mapping[str, Any]]) -> list[str]:
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for res in resources:
        children.setdefault(res.get("parentUrn"), []).append(res)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for res in sorted(children.get(parent, []), key=lambda r: (str(r["name"]), r["type"])):
            flags: list[str] = []
            if res["protect"]:
                flags.append("protect")
            if res["ignoreChanges"]:
                flags.append("ignoreChanges=" + ",".join(res["ignoreChanges"]))
            if res["deleteBeforeReplace"]:
                flags.append("deleteBeforeReplace")
            suffix = f"  [{'; '.join(flags)}]" if flags else ""
            lines.append(f"{'  ' * depth}{short_type(res['type'])} {res['name']}{suffix}")
            walk(str(res["urn"]), depth + 1)

    walk(None, 1)
    return lines


def summary(plan: Mapping[str, Any]) -> str:
    """What a reviewer reads first: tree, deploy waves, user_data sizes, vCluster PSS."""
    region = plan["region"]
    resources = plan["resources"]
    lines = [
        f"sovereign plan: stack {plan['stack']} ({region['role']}, region {region['key']}, "
        f"index {region['index']}): {len(resources)} resources",
        "",
        "Resources (parent > children):",
        *_tree_lines(resources),
        "",
        "Deploy waves (a wave runs in parallel and waits for the waves before it):",
    ]
    for number, wave in enumerate(plan["waves"], start=1):
        lines.append(f"  {number:>2}. {', '.join(wave)}")
    lines += ["", "Cloud-init user_data (worst case: 255.255.255.255, full-length token):"]
    for server in plan["servers"]:
        pct = 100 * server["worstCaseBytes"] / server["capBytes"]
        verdict = "ok" if server["withinCap"] else "OVER THE CAP"
        lines.append(
            f"  {server['name'] or 'server ' + str(server['node'])}: "
            f"{server['worstCaseBytes']:,} / {server['capBytes']:,} bytes ({pct:.1f}%, {verdict})"
        )
    for pool in plan.get("workers", []):
        pct = 100 * pool["worstCaseBytes"] / pool["capBytes"]
        verdict = "ok" if pool["withinCap"] else "OVER THE CAP"
        scaled = pool.get("autoscaling")
        size = (
            f"{scaled['min']}-{scaled['max']} x {pool['serverType']}, by {scaled['by']}"
            if scaled
            else f"{pool['count']} x {pool['serverType']}"
        )
        lines.append(
            f"  pool {pool['pool']} ({size}): "
            f"{pool['worstCaseBytes']:,} / {pool['capBytes']:,} bytes ({pct:.1f}%, {verdict})"
        )
    lines += ["", "Helm releases as Helm renders them (objects by kind; images):"]
    for release in plan["releases"]:
        counted = ", ".join(f"{kind} {count}" for kind, count in release["kinds"].items())
        lines.append(
            f"  {release['slot']:02d} {release['name']} ({release['chart']} {release['version']}, "
            f"namespace {release['namespace']}): {release['objects']} objects: {counted}"
        )
        lines += [f"       {image}" for image in release["images"]]
    lines += ["", "Problems in the rendered and declared objects:"]
    lines += [f"  - {problem}" for problem in plan["problems"]] or ["  (none)"]
    unpinned_list = plan.get("unpinned", [])
    lines += [
        "",
        f"Unpinned downloads and images ({len(unpinned_list)} warnings; --strict refuses):",
    ]
    lines += [f"  - WARNING: {item}" for item in unpinned_list] or ["  (none)"]
    lines += ["", "vClusters (Pod Security level:version):"]
    for vcluster in plan["vclusters"]:
        pss = vcluster["podSecurity"]
        levels = "  ".join(
            f"{mode}={pss[mode]['level']}:{pss[mode]['version']}" for mode in PSS_MODES
        )
        lines.append(f"  {vcluster['vcluster']:<5} namespace {vcluster['namespace']:<5} {levels}")
    if not plan["vclusters"]:
        lines.append("  (none)")
    lines += ["", "Certificates (when each expires, what renews it):"]
    for cert in plan.get("certificates", []):
        lines.append(f"  - {cert['certificate']}: {cert['validity']}; expires {cert['expires']}")
        lines.append(f"      renewed by {cert['renewedBy']}")
    lines += ["", "Outputs:"]
    for key, value in plan["outputs"].items():
        shown = value if isinstance(value, str) else dumps(value).replace("\n", " ").strip()
        shown = " ".join(str(shown).split())
        lines.append(f"  {key}: {shown[:100]}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The plan of a git ref


def plan_of_tree(tree: Path, stack: str) -> dict[str, Any]:
    """Run `tools.plan STACK --json -` of another checkout with this interpreter.

    `{}` when that checkout has no plan tool or no such stack (a new stack: all added).
    """
    if not (tree / "tools" / "plan.py").is_file() or not (tree / f"Pulumi.{stack}.yaml").is_file():
        return {}
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSAFEPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.plan", stack, "--json", "-"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PlanError(f"the plan of {stack} at the base failed:\n{proc.stderr.strip()}")
    try:
        return as_dict(json.loads(proc.stdout)) or {}
    except json.JSONDecodeError as err:
        raise PlanError(f"the plan of {stack} at the base printed no JSON plan: {err}") from None


def plan_at_ref(ref: str, stack: str, repo: Path = ROOT) -> dict[str, Any]:
    """The plan of `stack` as committed at git `ref` (`git archive` into a temporary dir)."""
    with tempfile.TemporaryDirectory(prefix="sovereign-plan-") as tmp:
        archive = Path(tmp) / "ref.tar"
        proc = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", "-o", str(archive), ref],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PlanError(f"git archive {ref} failed: {proc.stderr.strip()}")
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter=_safe_member)
        return plan_of_tree(tree, stack)


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, except that a link pointing outside (a committed `.venv`
    symlink, say) is skipped instead of failing the whole extraction: no plan needs it."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        if member.issym() or member.islnk():
            return None
        raise


# --------------------------------------------------------------------------------------------
# CLI


@dataclass(frozen=True, slots=True)
class Streams:
    out: TextIO
    err: TextIO
    standalone: bool  # the process is this command's own (not a test calling `main`)


def _read_plan(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as err:
        raise PlanError(f"cannot read the plan {path}: {err.strerror}") from None
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise PlanError(f"{path} is not a JSON plan: {err}") from None
    plan = as_dict(value)
    if plan is None:
        raise PlanError(f"{path} is not a JSON plan (an object, or {{}} for none)")
    return plan


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a plan."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def offline_notes(run: Run) -> str:
    """What the offline plan made up or cannot know, which preview reads for real."""
    from components.fleet import WireGuardPeers
    from components.network import WIREGUARD_UDP_PORT

    lines: list[str] = []
    if run.stand_ins:
        lines.append(
            f"  - secrets {', '.join(sorted(run.stand_ins))}: made-up stand-ins (a stack file "
            "holds a secret encrypted or not at all, and this plan reads none); preview and up "
            "read the real ones and refuse a missing sovereign:hcloudToken"
        )
    if run.of_type(WireGuardPeers.TYPE) and run.stack_references:
        lines.append(
            "  - WireGuard: the firewall's WireGuard rule (UDP "
            f"{WIREGUARD_UDP_PORT}) takes its sources from the peer stacks' server addresses "
            f"({', '.join(sorted(set(run.stack_references)))}), read at preview from "
            "their stack outputs; offline they have no servers, so no WireGuard rule shows here"
        )
    if not lines:
        return ""
    return "\nOffline stand-ins (preview reads these for real):\n" + "\n".join(lines) + "\n"


def _cmd_plan(args: argparse.Namespace, streams: Streams) -> int:
    directory = Path(args.dir) if args.dir else ROOT
    cfg, run = evaluate_stack(args.stack, directory)
    for line in run.logs:
        streams.err.write(f"{line}\n")
    plan = build_plan(cfg, run)
    text = dumps(plan)
    target = args.json or str(ROOT / "plans" / f"{args.stack}.json")
    if target == "-":
        streams.out.write(text)
        streams.err.write(summary(plan) + offline_notes(run))
    else:
        _write(Path(target), text)
        streams.out.write(summary(plan) + offline_notes(run))
        streams.out.write(f"\nwrote {target}\n")
    within_cap = all(node["withinCap"] for node in [*plan["servers"], *plan["workers"]])
    if args.strict and plan["unpinned"]:
        streams.err.write(
            f"--strict: {len(plan['unpinned'])} download(s) or image(s) are not pinned "
            "(listed above as WARNING); pin them (render/k3s_downloads.yaml, image digests) "
            "or run without --strict\n"
        )
        return 1
    return 0 if within_cap and not plan["problems"] else 1


def _cmd_diff(args: argparse.Namespace, streams: Streams) -> int:
    from tools.plan_diff import diff_plans

    first, second = args.diff
    if second == "-" or second.endswith(".json") or Path(second).is_file():
        old, new = _read_plan(first), _read_plan(second)
    else:
        # REF STACK: the stack at a git ref against the working tree.
        directory = Path(args.dir) if args.dir else ROOT
        require_stack(second, directory)
        old = plan_at_ref(first, second)
        cfg, run = evaluate_stack(second, directory)
        new = build_plan(cfg, run)
    streams.out.write(diff_plans(old, new))
    return 0


def _cmd_all(args: argparse.Namespace, streams: Streams) -> int:
    from tools.plan_fleet import run_fleet

    directory = Path(args.dir) if args.dir else ROOT
    return run_fleet(
        directory,
        live=args.live,
        jobs=args.jobs,
        out=streams.out,
        err=streams.err,
        standalone=streams.standalone,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="./sovereign plan",
        description="Offline previews people can review (no Pulumi CLI, no network, no token).",
    )
    parser.add_argument("stack", nargs="?", help="stack to plan (Pulumi.<stack>.yaml)")
    parser.add_argument(
        "--json", metavar="FILE", help="plan file (default plans/STACK.json; - = stdout)"
    )
    parser.add_argument(
        "--diff",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="Markdown diff of OLD.json NEW.json, or of REF STACK (git ref vs working tree)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse any k3s download or image not pinned by sha256/digest (else a warning)",
    )
    parser.add_argument("--all", action="store_true", help="check the fleet of every stack")
    parser.add_argument("--live", action="store_true", help="with --all: deployed stack outputs")
    parser.add_argument("--dir", metavar="DIR", help="directory of the Pulumi.*.yaml files")
    parser.add_argument(
        "--jobs", type=int, default=None, help="with --all: worker processes (default: auto)"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    standalone: bool = False,
) -> int:
    """The CLI. `standalone` (only from `python -m tools.plan`): the process is ours, so
    `--all` may fork workers and tune the garbage collector."""
    streams = Streams(out or sys.stdout, err or sys.stderr, standalone)
    parser = _parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    modes = sum(1 for on in (args.diff is not None, args.all, args.stack is not None) if on)
    if modes != 1 or (args.live and not args.all) or (args.json and not args.stack):
        streams.err.write(parser.format_usage())
        streams.err.write("choose one of: STACK, --diff OLD NEW (or REF STACK), --all\n")
        return 2
    try:
        if args.diff is not None:
            return _cmd_diff(args, streams)
        if args.all:
            return _cmd_all(args, streams)
        return _cmd_plan(args, streams)
    except PlanError as error:
        streams.err.write(f"{error}\n")
        return error.code


if __name__ == "__main__":
    status = main(standalone=True)
    # Exiting would otherwise garbage-collect the SDKs' million objects one last time (about
    # 0.4 s of a 2 s plan); frozen objects are skipped, and the OS frees the memory anyway.
    gc.freeze()
    sys.exit(status)
