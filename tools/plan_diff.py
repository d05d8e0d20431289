"""`plan --diff`: two JSON plans as a Markdown review comment, grouped by resource (pure).

Which input changes replace a resource comes from the providers' schemas (ForceNew in
terraform-provider-hcloud, which pulumi-hcloud bridges; Kubernetes object identity):

- hcloud Server: `image`, `location`, `datacenter`, `userData`, `sshKeys`. `serverType` is an
  in-place resize (the server is powered off for it); `networks`, `firewallIds`, `labels`,
  `placementGroupId`, `publicNets` are updated in place.
- hcloud PrimaryIp: `type`, `location`, `datacenter`. Network: `ipRange` (Hetzner can grow a
  range through an action, but the provider marks it ForceNew). NetworkSubnet: every input.
  SshKey: `publicKey`. PlacementGroup: `type`. LoadBalancer: `location`, `networkZone`.
- Kubernetes objects: `metadata.name`, `metadata.namespace`, `apiVersion`, `kind`.
  Helm Release: `name`, `namespace`. The provider: `clusterIdentifier` (which replaces every
  object it manages).
- random / tls: every input (those providers replace on any change). Command: `triggers`.

A change to an input listed in the resource's `ignoreChanges` is reported as
"ignored (no replacement)": Pulumi keeps the old value.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tools.plan_json import SECRET, as_dict, as_list, child_path, short_type

_MISSING: Final = object()

HCLOUD_REPLACES: Final[Mapping[str, tuple[str, ...]]] = {
    "hcloud:index/server:Server": ("image", "location", "datacenter", "userData", "sshKeys"),
    "hcloud:index/primaryIp:PrimaryIp": ("type", "location", "datacenter"),
    "hcloud:index/network:Network": ("ipRange",),
    "hcloud:index/networkSubnet:NetworkSubnet": (
        "networkId",
        "type",
        "networkZone",
        "ipRange",
        "vswitchId",
    ),
    "hcloud:index/sshKey:SshKey": ("publicKey",),
    "hcloud:index/placementGroup:PlacementGroup": ("type",),
    "hcloud:index/loadBalancer:LoadBalancer": ("location", "networkZone"),
    "hcloud:index/loadBalancerNetwork:LoadBalancerNetwork": (
        "loadBalancerId",
        "networkId",
        "subnetId",
        "ip",
    ),
    "hcloud:index/loadBalancerTarget:LoadBalancerTarget": ("type", "loadBalancerId"),
    "hcloud:index/loadBalancerService:LoadBalancerService": ("loadBalancerId", "listenPort"),
    "kubernetes:helm.sh/v3:Release": ("name", "namespace"),
    "pulumi:providers:kubernetes": ("clusterIdentifier",),
    "command:remote:Command": ("triggers",),
}
KUBERNETES_IDENTITY: Final = ("metadata.name", "metadata.namespace", "apiVersion", "kind")
# Providers whose resources are replaced by any input change.
REPLACE_ON_ANY: Final = ("random:", "tls:")
IN_PLACE_NOTES: Final[Mapping[tuple[str, str], str]] = {
    ("hcloud:index/server:Server", "serverType"): "update in place (server powered off to resize)",
    (
        "pulumi:providers:kubernetes",
        "kubeconfig",
    ): "update in place (clusterIdentifier keeps the objects)",
    # controlPlane.k3sVersion: the servers' user_data change is ignored; this is the upgrade.
    (
        "kubernetes:upgrade.cattle.io/v1:Plan",
        "spec.version",
    ): "in-place k3s upgrade through system-upgrade-controller (one server at a time, "
    "cordoned; no server is replaced)",
    (
        "hcloud:index/server:Server",
        'labels["openova.io/k3s-version"]',
    ): "update in place (records the version for the next skew check)",
}
OPTIONS: Final = (
    "parent",
    "provider",
    "dependencies",
    "protect",
    "ignoreChanges",
    "deleteBeforeReplace",
    "additionalSecretOutputs",
)
MAX_CELL: Final = 80


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    before: Any
    after: Any
    effect: str
    replaces: bool = False


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}[", f'{prefix}["'))


def replacing_inputs(type_: str) -> tuple[str, ...]:
    if type_.startswith(REPLACE_ON_ANY):
        return ("",)
    if type_.startswith("kubernetes:") and type_ != "kubernetes:helm.sh/v3:Release":
        return KUBERNETES_IDENTITY
    return HCLOUD_REPLACES.get(type_, ())


def effect_of(resource: Mapping[str, Any], path: str) -> tuple[str, bool]:
    """(effect, replaces) of changing input `path` of `resource` (its new plan entry)."""
    type_ = str(resource["type"])
    ignored = any(_under(path, str(ig)) for ig in resource.get("ignoreChanges", []))
    forces = any(rule == "" or _under(path, rule) for rule in replacing_inputs(type_))
    if forces and ignored:
        return "ignored (no replacement)", False
    if ignored:
        return "ignored (ignoreChanges)", False
    if not forces:
        return IN_PLACE_NOTES.get((type_, path), "update in place"), False
    effect = "**replace**"
    if type_ == "pulumi:providers:kubernetes":
        effect += " (and every object this provider manages)"
    if resource.get("deleteBeforeReplace"):
        effect += " (delete first)"
    if resource.get("protect"):
        effect += " - protected: `pulumi up` refuses until `protect` is lifted"
    return effect, True


def _leaf_changes(before: Any, after: Any, path: str) -> list[tuple[str, Any, Any]]:
    old_map, new_map = as_dict(before), as_dict(after)
    if old_map is not None and new_map is not None:
        changes: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old_map) | set(new_map)):
            changes += _leaf_changes(
                old_map.get(key, _MISSING), new_map.get(key, _MISSING), child_path(path, key)
            )
        return changes
    old_list, new_list = as_list(before), as_list(after)
    if old_list is not None and new_list is not None and len(old_list) == len(new_list):
        changes = []
        for i, (old_item, new_item) in enumerate(zip(old_list, new_list, strict=True)):
            changes += _leaf_changes(old_item, new_item, f"{path}[{i}]")
        return changes
    if before == after and type(before) is type(after):
        return []
    return [(path, before, after)]


def resource_changes(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_server: Mapping[str, Any] | None = None,
    new_server: Mapping[str, Any] | None = None,
) -> list[Change]:
    """Every changed input (leaf paths) and option of one resource present in both plans."""
    changes: list[Change] = []
    for path, before, after in _leaf_changes(old.get("inputs", {}), new.get("inputs", {}), ""):
        if before == SECRET and after == SECRET:
            continue
        effect, replaces = effect_of(new, path)
        changes.append(Change(path, before, after, effect, replaces))
    if old_server is not None and new_server is not None:
        # userData itself is a secret input; its rendering (token hidden) is compared instead.
        before, after = old_server.get("userData"), new_server.get("userData")
        if before != after:
            effect, replaces = effect_of(new, "userData")
            changes.append(Change("userData (cloud-init)", before, after, effect, replaces))
    for option in OPTIONS:
        before, after = old.get(option), new.get(option)
        if before != after:
            changes.append(Change(f"options.{option}", before, after, "option (no cloud change)"))
    return changes


def _cell(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if "\n" in text:
        return "(multi-line, below)"
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 3] + "..."
    text = text.replace("|", "\\|")
    return f"`{text}`" if "`" not in text else text


def _text_diff(path: str, before: Any, after: Any) -> list[str]:
    old_lines = (before if isinstance(before, str) else "").splitlines()
    new_lines = (after if isinstance(after, str) else "").splitlines()
    body = list(difflib.unified_diff(old_lines, new_lines, "before", "after", lineterm="", n=2))
    return [
        "<details><summary><code>" + path + "</code></summary>",
        "",
        "```diff",
        *body[2:],
        "```",
        "</details>",
    ]


def _title(resource: Mapping[str, Any]) -> str:
    return f"`{short_type(str(resource['type']))}` **{resource['name']}**"


def _servers_by_name(plan: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    servers: dict[str, Mapping[str, Any]] = {}
    for server in as_list(plan.get("servers")) or []:
        entry = as_dict(server)
        if entry is not None and entry.get("name"):
            servers[str(entry["name"])] = entry
    return servers


def _resources(plan: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for item in as_list(plan.get("resources")) or []:
        entry = as_dict(item)
        if entry is not None:
            found[str(entry["urn"])] = entry
    return found


def diff_plans(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The review comment: marker line, header, then added / removed / changed resources."""
    stack = str(new.get("stack") or old.get("stack") or "unknown")
    before, after = _resources(old), _resources(new)
    old_servers, new_servers = _servers_by_name(old), _servers_by_name(new)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed: list[tuple[Mapping[str, Any], list[Change]]] = []
    for urn in sorted(set(before) & set(after)):
        name = str(after[urn]["name"])
        is_server = after[urn]["type"] == "hcloud:index/server:Server"
        changes = resource_changes(
            before[urn],
            after[urn],
            old_servers.get(name) if is_server else None,
            new_servers.get(name) if is_server else None,
        )
        if changes:
            changed.append((after[urn], changes))
    replaced = sum(1 for _, changes in changed if any(c.replaces for c in changes))
    image_lines = image_changes(old, new)

    lines = [f"<!-- sovereign-plan:{stack} -->", f"### Plan of stack `{stack}`", ""]
    region = as_dict(new.get("region")) or as_dict(old.get("region"))
    if region is not None:
        lines.append(
            f"{region.get('role')} region `{region.get('key')}` (index {region.get('index')}), "
            f"vClusters: {', '.join(map(str, region.get('vclusters') or [])) or 'none'}"
        )
        lines.append("")
    if not old:
        lines += ["No base plan: every resource is new.", ""]
    lines.append(
        f"**{len(added)} to add, {len(removed)} to remove, {len(changed)} to change "
        f"({replaced} replaced)**"
    )
    lines.append("")
    if not (added or removed or changed or image_lines):
        lines.append("No changes.")
        return "\n".join(lines) + "\n"
    if image_lines:
        lines += ["#### Images", "", *image_lines, ""]
    if added:
        lines += ["#### Added", ""]
        lines += [_added_line(after[urn]) for urn in added]
        lines.append("")
    if removed:
        lines += ["#### Removed", ""]
        for urn in removed:
            res = before[urn]
            note = " - protected: `pulumi up` refuses to delete it" if res.get("protect") else ""
            lines.append(f"- {_title(res)}{note}")
        lines.append("")
    if changed:
        lines += ["#### Changed", ""]
        for res, changes in changed:
            lines += _changed_block(res, changes)
    return "\n".join(lines) + "\n"


def _added_line(res: Mapping[str, Any]) -> str:
    flags = [f"parent {res['parent']}"] if res.get("parent") else []
    if res.get("protect"):
        flags.append("protect")
    return f"- {_title(res)}" + (f" ({', '.join(flags)})" if flags else "")


def _changed_block(res: Mapping[str, Any], changes: Sequence[Change]) -> list[str]:
    verdict = " - **replacement**" if any(c.replaces for c in changes) else ""
    lines = [
        f"{_title(res)}{verdict}",
        "",
        "| Input | Before | After | Effect |",
        "|---|---|---|---|",
    ]
    texts: list[str] = []
    for change in changes:
        lines.append(
            f"| `{change.path}` | {_cell(change.before)} | {_cell(change.after)} "
            f"| {change.effect} |"
        )
        multi = (change.before, change.after)
        if any(isinstance(v, str) and "\n" in v for v in multi):
            texts += _text_diff(change.path, change.before, change.after)
    lines.append("")
    if texts:
        lines += [*texts, ""]
    return lines


def _release_images(plan: Mapping[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """release name -> (chart and version, images it pulls) from a plan's rendered releases."""
    found: dict[str, tuple[str, set[str]]] = {}
    for item in as_list(plan.get("releases")) or []:
        release = as_dict(item) or {}
        chart = f"{release.get('chart')} {release.get('version')}"
        found[str(release.get("name"))] = (chart, set(map(str, release.get("images") or [])))
    return found


def image_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Per release, every image that stops or starts being pulled: a version bump shows each
    image that moves, which is what the nodes (and the mirror) will have to pull."""
    before, after = _release_images(old), _release_images(new)
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        old_chart, old_images = before.get(name, ("", set()))
        new_chart, new_images = after.get(name, ("", set()))
        if old_images == new_images:
            continue
        chart = new_chart if old_chart in ("", new_chart) else f"{old_chart} -> {new_chart}"
        lines.append(f"- release `{name}` ({chart or old_chart}):")
        lines += [f"  - removed `{image}`" for image in sorted(old_images - new_images)]
        lines += [f"  - added `{image}`" for image in sorted(new_images - old_images)]
    return lines
