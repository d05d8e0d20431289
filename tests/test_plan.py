"""`./sovereign plan`: offline JSON plans, their Markdown diff, the fleet check (offline and live).

Golden plans: `UPDATE_GOLDEN=1 ./sovereign test tests/test_plan.py` rewrites tests/golden/*.json
from the current program; review the diff of those files like any other change.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.preflight import parse as parse_config
from render.cloudinit import (
    K3S_TOKEN_LENGTH,
    USER_DATA_CAP,
    WORST_CASE_IPV4,
    render_user_data,
    worst_case_boot,
)
from tools.mockrun import (
    FAKE_HCLOUD_TOKEN,
    FAKE_K3S_KUBECONFIG,
    FAKE_K3S_TOKEN,
    FAKE_PRIVATE_KEY,
    evaluate,
    fake_pem,
    stack_config,
)
from tools.plan import ROOT, build_plan, main, plan_boot, plan_of_tree
from tools.plan_diff import diff_plans, effect_of
from tools.plan_fleet import StackSummary, check_fleet, generate_fleet
from tools.plan_json import SECRET, dumps

GOLDEN = Path(__file__).parent / "golden"
CLIENT_KEY = yaml.safe_load(FAKE_K3S_KUBECONFIG)["users"][0]["user"]["client-key-data"]
SECRETS = {
    "k3s token": FAKE_K3S_TOKEN,
    "deployer private key": FAKE_PRIVATE_KEY.strip(),
    "deployer private key body": FAKE_PRIVATE_KEY.splitlines()[1],
    "deployer private key (decoded)": base64.b64decode(FAKE_PRIVATE_KEY.splitlines()[1]).decode(),
    "hcloud token": FAKE_HCLOUD_TOKEN,
    "kubeconfig client key": CLIENT_KEY,
    "kubeconfig client key (decoded)": base64.b64decode(CLIENT_KEY).decode(),
    # The body of every key the tls provider mints (tools.mockrun.fake_pem), in both stacks.
    "minted private keys": base64.b64encode(b"fake-private-key-omantel").decode(),
}


def fake_ca_file(region: str, name: str) -> str:
    """What the mocks return for the minted CA file `name` (relative to k3s's tls dir)."""
    stem, ext = name.rsplit(".", 1)
    slug = stem.replace("/", "-")
    if ext == "crt":
        return fake_pem("CERTIFICATE", f"{region}-{slug}")
    return fake_pem("PRIVATE KEY", f"{region}-{slug}-key")


SERVER = "hcloud:index/server:Server"
RELEASE = "kubernetes:helm.sh/v3:Release"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], str, str]]:
    """Each committed stack planned once through the CLI: (plan, JSON text, terminal text)."""
    out_dir = tmp_path_factory.mktemp("plans")
    result: dict[str, tuple[dict[str, Any], str, str]] = {}
    for stack in ("primary", "secondary"):
        target = out_dir / f"{stack}.json"
        code, out, err = cli(stack, "--json", str(target))
        assert code == 0, err
        text = target.read_text()
        result[stack] = (json.loads(text), text, out + err)
    return result


def resource(plan: dict[str, Any], type_: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in plan["resources"] if r["type"] == type_ and name in (None, r["name"])]
    assert len(found) == 1, [r["name"] for r in found]
    return found[0]


def wave_of(plan: dict[str, Any], name: str) -> int:
    return next(i for i, wave in enumerate(plan["waves"]) if name in wave)


# --------------------------------------------------------------------------------------------
# The plan of one stack


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_no_secret_value_reaches_the_json_or_the_terminal(planned, stack: str) -> None:
    _, text, terminal = planned[stack]
    for what, secret in SECRETS.items():
        assert secret not in text, f"{what} leaked into the {stack} plan JSON"
        assert secret not in terminal, f"{what} leaked into the {stack} terminal summary"


def test_every_secret_input_path_shows_the_placeholder(planned, primary) -> None:
    plan = planned["primary"][0]
    by_urn = {r["urn"]: r for r in plan["resources"]}
    checked = 0
    for reg in primary.registrations:
        entry = by_urn[reg.urn]
        assert entry["secretInputs"] == sorted(reg.secret_inputs)
        for path in reg.secret_inputs:
            assert "." not in path, "extend this walk for nested paths"
            assert "[" not in path, "extend this walk for nested paths"
            assert entry["inputs"][path] == SECRET, (reg.name, path)
            checked += 1
    assert checked >= 3  # server userData, the wait's environment, provider kubeconfig
    assert resource(plan, SERVER)["inputs"]["userData"] == SECRET
    assert resource(plan, "pulumi:providers:kubernetes")["inputs"]["kubeconfig"] == SECRET
    for wait in ("omantel-fsn1-wait", "slot-01-cilium-nodes-ready"):
        assert resource(plan, "command:local:Command", wait)["inputs"]["environment"] == SECRET
    assert plan["outputs"]["kubeconfig"] == SECRET
    assert plan["outputs"]["regionKey"] == "fsn1"


def test_resources_carry_parent_dependencies_and_options(planned) -> None:
    plan = planned["secondary"][0]
    assert [r["urn"] for r in plan["resources"]] == sorted(r["urn"] for r in plan["resources"])
    server = resource(plan, SERVER, "omantel-hel1-2-1")
    assert server["parent"] == "omantel-hel1-2"
    assert server["parentUrn"].endswith("sovereign:infra:ControlPlane::omantel-hel1-2")
    assert "omantel-hel1-2-subnet" in server["dependencies"]
    assert server["protect"] is True
    assert server["ignoreChanges"] == ["image", "sshKeys", "userData"]
    assert server["deleteBeforeReplace"] is False
    assert server["inputs"]["networks"][0]["ip"] == "10.0.1.2"
    assert isinstance(server["inputs"]["networks"][0]["networkId"], int)
    release = resource(plan, RELEASE, "slot-59-rtz-vcluster-release")
    assert release["provider"] == "omantel-hel1-2-k8s"
    assert release["inputs"]["values"]["controlPlane"]["statefulSet"]["image"]["tag"] == "0.20.0"
    assert isinstance(release["inputs"]["timeout"], int), "integral numbers stay integers"


def test_cloud_init_is_rendered_with_the_token_hidden_and_sized(planned, secondary) -> None:
    plan = planned["secondary"][0]
    cfg = parse_config(stack_config("secondary"), "secondary")
    assert [s["node"] for s in plan["servers"]] == [1, 2, 3]
    api_ip = secondary.outputs["apiLoadBalancerIp"]
    for node, server in enumerate(plan["servers"]):
        shown = render_user_data(
            cfg, node, server["publicIp"], SECRET, plan_boot(cfg, node, api_ip, SECRET)
        )
        assert server["userData"] == shown
        # k3s's config.yaml is a literal block inside the cloud-config.
        assert "\n    token: '[secret]'\n" in server["userData"]
        # What the plan shows is what the server receives, token and CA files aside.
        reg = next(r for r in secondary.of_type(SERVER) if r.name == server["name"])
        boot = plan_boot(cfg, node, api_ip, SECRET)
        files = {name: fake_ca_file("omantel-hel1-2", name) for name in boot.ca_files}
        real = render_user_data(
            cfg, node, server["publicIp"], FAKE_K3S_TOKEN, replace(boot, ca_files=files)
        )
        assert reg.inputs["userData"] == real
        worst = render_user_data(
            cfg, node, WORST_CASE_IPV4, "x" * K3S_TOKEN_LENGTH, worst_case_boot(cfg, node)
        )
        assert server["worstCaseBytes"] == len(worst.encode())
        assert server["capBytes"] == USER_DATA_CAP == 32_768
        assert server["withinCap"] is True
    assert "/ 32,768 bytes" in planned["secondary"][2]


def test_waves_deploy_cilium_then_cert_manager_then_all_vclusters_together(planned) -> None:
    for stack, vclusters in (("primary", ("dmz", "mgmt")), ("secondary", ("dmz", "rtz"))):
        plan = planned[stack][0]
        cilium = wave_of(plan, "slot-01-cilium-release")
        cert_manager = wave_of(plan, "slot-02-cert-manager-release")
        waves = {
            wave_of(plan, f"slot-{n:02d}-{v}-vcluster-release")
            for v, n in (("dmz", 54), ("mgmt", 58), ("rtz", 59))
            if v in vclusters
        }
        assert cilium < cert_manager < min(waves)
        assert len(waves) == 1, "the vClusters of a region install in parallel"
        subnet = next(r["name"] for r in plan["resources"] if r["name"].endswith("-subnet"))
        for server in (r["name"] for r in plan["resources"] if r["type"] == SERVER):
            assert wave_of(plan, subnet) < wave_of(plan, server) < cilium
    terminal = planned["primary"][2]
    assert "Deploy waves" in terminal
    assert "slot-54-dmz-vcluster-release, slot-58-mgmt-vcluster-release" in terminal


def test_summary_shows_the_tree_and_pod_security_levels(planned) -> None:
    plan, _, terminal = planned["primary"]
    assert [v["vcluster"] for v in plan["vclusters"]] == ["dmz", "mgmt"]
    mgmt = plan["vclusters"][1]
    assert mgmt["podSecurity"]["enforce"] == {"level": "restricted", "version": "latest"}
    assert mgmt["releases"] == ["mgmt-vcluster"]
    assert "mgmt  namespace mgmt  enforce=restricted:latest  audit=restricted:latest" in terminal
    # Children are indented under their own component (names repeat across components).
    assert "  sovereign:ControlPlane omantel-fsn1\n    hcloud:Server omantel-fsn1-1" in terminal
    assert (
        "  sovereign:Kubeconfig omantel-fsn1\n    random:RandomId omantel-fsn1-cluster-id\n"
        "    command:Command omantel-fsn1-wait\n" in terminal
    )


@pytest.mark.parametrize("stack", ["primary", "secondary"])
def test_plan_matches_the_golden_file(planned, stack: str) -> None:
    text = planned[stack][1]
    golden = GOLDEN / f"{stack}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        # Rewriting the golden file makes this test pass whatever the plan is: never in CI.
        assert not os.environ.get("CI"), "UPDATE_GOLDEN is for people reviewing a diff, not CI"
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), "run: UPDATE_GOLDEN=1 ./sovereign test tests/test_plan.py"
    assert text == golden.read_text(), (
        f"the {stack} plan changed; review, then: UPDATE_GOLDEN=1 ./sovereign test "
        "tests/test_plan.py"
    )


def test_plan_output_is_canonical(planned) -> None:
    plan, text, _ = planned["primary"]
    assert dumps(plan) == text


def test_bad_config_exits_1_with_the_message_and_writes_nothing(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.primary.yaml").read_text())
    doc["config"]["sovereign:controlPlane"]["count"] = 2
    (tmp_path / "Pulumi.broken.yaml").write_text(yaml.safe_dump(doc))
    target = tmp_path / "out" / "broken.json"
    code, out, err = cli("broken", "--dir", str(tmp_path), "--json", str(target))
    assert code == 1
    assert "invalid sovereign configuration in stack 'broken'" in err
    assert "sovereign:controlPlane.count = 2" in err
    assert "Traceback" not in err + out
    assert not target.exists()
    assert not target.parent.exists()


def test_unknown_stack_and_bad_usage_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("nope", "--json", str(tmp_path / "x.json"))
    assert code == 2
    assert "no Pulumi.nope.yaml" in err
    assert "primary secondary" in err
    assert cli()[0] == 2
    assert cli("primary", "--all")[0] == 2


def test_the_terminal_names_the_secret_stand_ins_and_the_unread_wireguard_sources(
    planned,
) -> None:
    for stack in ("primary", "secondary"):
        terminal = planned[stack][2]
        assert "Offline stand-ins (preview reads these for real):" in terminal
        assert "secrets hcloud:token, sovereign:hcloudToken: made-up stand-ins" in terminal
    # The secondary's WireGuard sources are its primary's servers, which no offline run has.
    assert "(primary), read at preview" in planned["secondary"][2]
    assert "no WireGuard rule shows here" not in planned["primary"][2]


def test_a_stack_file_with_its_secret_set_encrypted_plans_with_a_stand_in(tmp_path: Path) -> None:
    """`pulumi config set --secret sovereign:hcloudToken` writes a secure: value, which the
    offline plan cannot decrypt: it plans with a stand-in and says so."""
    doc = yaml.safe_load((ROOT / "Pulumi.primary.yaml").read_text())
    doc["config"]["sovereign:hcloudToken"] = {"secure": "v1:ciphertextOfTheToken"}
    (tmp_path / "Pulumi.op.yaml").write_text(yaml.safe_dump(doc))
    code, out, err = cli("op", "--dir", str(tmp_path), "--json", str(tmp_path / "op.json"))
    assert code == 0, err
    assert "secrets hcloud:token, sovereign:hcloudToken: made-up stand-ins" in out
    assert "ciphertextOfTheToken" not in out + err + (tmp_path / "op.json").read_text()


@pytest.fixture(scope="module", autouse=True)
def entry_point() -> Iterator[subprocess.Popen[str]]:
    """`./sovereign plan primary --json -`, started first: it runs on the second core while
    the in-process tests run on the first (a whole plan process takes about two seconds)."""
    proc = subprocess.Popen(
        [str(ROOT / "sovereign"), "plan", "primary", "--json", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_the_entry_point_prints_json_on_stdout_and_the_summary_on_stderr(entry_point) -> None:
    stdout, stderr = entry_point.communicate(timeout=120)
    assert entry_point.returncode == 0, stderr
    plan = json.loads(stdout)
    assert plan["stack"] == "primary"
    assert "Deploy waves" in stderr
    for secret in SECRETS.values():
        assert secret not in stdout + stderr
    assert stdout == (GOLDEN / "primary.json").read_text()


# --------------------------------------------------------------------------------------------
# --diff


def plan_of(stack: str, overrides: dict[str, Any]) -> dict[str, Any]:
    raw = {**stack_config(stack)}
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    run = evaluate(stack, raw=raw)
    assert run.error is None, run.error
    return json.loads(dumps(build_plan(parse_config(raw, stack), run)))


@pytest.fixture(scope="module")
def changed_primary() -> dict[str, Any]:
    return plan_of(
        "primary",
        {
            "controlPlane": {"image": "ubuntu-26.04", "serverType": "cpx42"},
            "vclusters": {
                "mgmt": {"podSecurity": {"enforce": "baseline"}},
                "dmz": {"podSecurity": {"enforce": "baseline"}, "image": {"tag": "0.21.0"}},
            },
            "loadBalancer": {"enabled": True},
            "cilium": {"gatewayApi": {"enabled": True}},
        },
    )


def test_diff_groups_added_and_changed_resources_by_resource(planned, changed_primary) -> None:
    markdown = diff_plans(planned["primary"][0], changed_primary)
    lines = markdown.splitlines()
    assert lines[0] == "<!-- sovereign-plan:primary -->"
    assert "### Plan of stack `primary`" in lines[1]
    added = markdown.split("#### Added")[1].split("####")[0]
    assert "`hcloud:LoadBalancer` **omantel-fsn1-lb**" in added
    assert "#### Removed" not in markdown
    changed = markdown.split("#### Changed")[1]
    release = changed.split("**slot-54-dmz-vcluster-release**")[1].split("\n`")[0]
    assert (
        "| `values.controlPlane.statefulSet.image.tag` | `0.20.0` | `0.21.0` | update in place |"
        in release
    )
    server = changed.split("**omantel-fsn1-1**")[1].split("\n`")[0]
    assert "| `image` | `ubuntu-24.04` | `ubuntu-26.04` | ignored (no replacement) |" in server
    assert "| `serverType` | `cpx32` | `cpx42` | update in place (server powered off" in server
    assert "**replacement**" not in markdown
    assert "0 replaced" in markdown


def test_diff_reports_removed_resources(planned, changed_primary) -> None:
    markdown = diff_plans(changed_primary, planned["primary"][0])
    removed = markdown.split("#### Removed")[1].split("####")[0]
    assert "`hcloud:LoadBalancer` **omantel-fsn1-lb**" in removed
    assert "#### Added" not in markdown


def test_diff_flags_a_replacement_the_server_no_longer_ignores(planned) -> None:
    new = plan_of(
        "secondary",
        {
            "controlPlane": {
                "image": "ubuntu-26.04",
                "allowReplacement": True,
                "k3sVersion": "v1.35.7+k3s1",
            },
            "replacement": {"server": "cp-2"},
        },
    )
    markdown = diff_plans(planned["secondary"][0], new)
    server = markdown.split("**omantel-hel1-2-2**")[1].split("\n`")[0]
    assert " - **replacement**" in server.splitlines()[0]
    # Only the named server: the other two keep ignoring the new image.
    other = markdown.split("**omantel-hel1-2-3**")[1].split("\n`")[0]
    assert "| `image` | `ubuntu-24.04` | `ubuntu-26.04` | ignored (no replacement) |" in other
    assert "| `image` | `ubuntu-24.04` | `ubuntu-26.04` | **replace** (delete first) |" in server
    assert (
        "| `userData (cloud-init)` | (multi-line, below) | (multi-line, below) | **replace**"
        in server
    )
    assert "-    version=v1.35.6+k3s1\n+    version=v1.35.7+k3s1" in markdown
    assert "| `options.ignoreChanges` |" in server
    # The server, and the replacement generation its user_data now carries.
    assert "(2 replaced)" in markdown
    assert "`random:RandomId` **omantel-hel1-2-replacement** - **replacement**" in markdown
    assert "- `command:Command` **omantel-hel1-2-remove-cp-2**" in markdown
    # The version bump itself is an in-place upgrade of every server through the Plan.
    plan_row = markdown.split("**slot-03-system-upgrade-server-plan**")[1].split("\n`")[0]
    assert (
        "| `spec.version` | `v1.35.6+k3s1` | `v1.35.7+k3s1` | in-place k3s upgrade through "
        "system-upgrade-controller" in plan_row
    )
    for secret in SECRETS.values():
        assert secret not in markdown


@pytest.mark.parametrize(
    ("type_", "path", "expected"),
    [
        (RELEASE, "name", "**replace**"),
        (RELEASE, "namespace", "**replace**"),
        (RELEASE, "values.controlPlane.statefulSet.image.tag", "update in place"),
        ("kubernetes:core/v1:Namespace", "metadata.name", "**replace**"),
        (
            "kubernetes:core/v1:Namespace",
            'metadata.labels["pod-security.kubernetes.io/enforce"]',
            "update in place",
        ),
        ("hcloud:index/primaryIp:PrimaryIp", "location", "**replace**"),
        ("hcloud:index/primaryIp:PrimaryIp", "type", "**replace**"),
        ("hcloud:index/primaryIp:PrimaryIp", "labels.x", "update in place"),
        ("hcloud:index/network:Network", "ipRange", "**replace**"),
        (SERVER, "sshKeys[0]", "**replace**"),
        (SERVER, "location", "**replace**"),
        (SERVER, "networks[0].ip", "update in place"),
        ("random:index/randomPassword:RandomPassword", "length", "**replace**"),
    ],
)
def test_replacement_rules(type_: str, path: str, expected: str) -> None:
    effect, replaces = effect_of({"type": type_, "ignoreChanges": []}, path)
    assert effect.startswith(expected)
    assert replaces is (expected == "**replace**")


def test_ignore_changes_turns_a_replacement_into_no_replacement() -> None:
    server = {"type": SERVER, "ignoreChanges": ["image", "userData"], "protect": True}
    assert effect_of(server, "image") == ("ignored (no replacement)", False)
    assert effect_of(server, "location")[1] is True


def test_diff_against_no_base_plan_adds_everything(planned, tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text("{}")
    new.write_text(planned["secondary"][1])
    code, markdown, _ = cli("--diff", str(old), str(new))
    assert code == 0
    assert markdown.startswith("<!-- sovereign-plan:secondary -->\n")
    total = len(planned["secondary"][0]["resources"])
    assert f"**{total} to add, 0 to remove, 0 to change (0 replaced)**" in markdown
    assert "No base plan" in markdown
    same = cli("--diff", str(new), str(new))[1]
    assert "No changes." in same


def test_diff_at_a_git_ref_without_the_plan_tool_is_all_added() -> None:
    first = subprocess.run(
        ["git", "-C", str(ROOT), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    code, markdown, err = cli("--diff", first, "primary")
    assert code == 0, err
    assert markdown.startswith("<!-- sovereign-plan:primary -->\n")
    assert "No base plan" in markdown
    assert "0 to remove, 0 to change" in markdown


def test_plan_of_another_tree_runs_its_own_plan_tool(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "Pulumi.primary.yaml").write_text("config: {}\n")
    (tmp_path / "tools" / "plan.py").write_text(
        "import json, sys\n"
        "assert sys.argv[1:] == ['primary', '--json', '-'], sys.argv\n"
        "print(json.dumps({'stack': 'primary', 'resources': []}))\n"
    )
    assert plan_of_tree(tmp_path, "primary") == {"stack": "primary", "resources": []}
    assert plan_of_tree(tmp_path, "secondary") == {}, "a stack new in this change: all added"


# --------------------------------------------------------------------------------------------
# Fleet


def summary(
    stack: str, role: str, index: int, vclusters: tuple[str, ...], **kw: Any
) -> StackSummary:
    key = kw.pop("key", "fsn1" if index == 0 else f"nbg1-{index}")
    return StackSummary(
        stack=stack,
        role=role,
        key=key,
        index=index,
        pod_cidr=kw.pop("pod_cidr", f"10.{42 + index}.0.0/16"),
        service_cidr=kw.pop("service_cidr", f"10.{96 + index}.0.0/16"),
        vclusters=vclusters,
    )


VALID = [
    summary("primary", "primary", 0, ("dmz", "mgmt")),
    summary("second", "secondary", 1, ("dmz", "rtz")),
    summary("third", "secondary", 2, ("dmz", "rtz")),
]


def test_a_valid_three_region_fleet_shows_6_of_6() -> None:
    report = check_fleet(VALID)
    assert report.ok, report.problems
    assert report.dashboard == "vClusters 6/6 (MGMT 1/1, DMZ 3/3, RTZ 2/2)"


def test_fleet_refuses_two_primaries_by_name() -> None:
    fleet = [VALID[0], summary("rogue", "primary", 3, ("dmz", "mgmt")), VALID[2]]
    report = check_fleet(fleet)
    assert not report.ok
    assert any(
        "exactly one primary" in p and "found 2 (primary, rogue)" in p for p in report.problems
    ), report.problems
    assert report.dashboard == "vClusters 5/6 (MGMT 2/1, DMZ 3/3, RTZ 1/2)"


def test_fleet_refuses_overlapping_cidrs_naming_stacks_keys_and_values() -> None:
    fleet = [
        *VALID[:2],
        summary("third", "secondary", 2, ("dmz", "rtz"), pod_cidr="10.43.128.0/17"),
    ]
    problems = check_fleet(fleet).problems
    assert problems == [
        "stacks second and third: sovereign:network.podCidr 10.43.0.0/16 (second) overlaps "
        "sovereign:network.podCidr 10.43.128.0/17 (third); regions route each other's pods and "
        "services, so every range must be distinct (set them, or give each region its own "
        "sovereign:region.index)"
    ]


def test_fleet_refuses_duplicate_keys_and_indexes_and_a_missing_rtz() -> None:
    fleet = [
        VALID[0],
        VALID[1],
        summary(
            "third",
            "secondary",
            1,
            ("dmz",),
            key="nbg1-1",
            pod_cidr="10.50.0.0/16",
            service_cidr="10.100.0.0/16",
        ),
    ]
    problems = check_fleet(fleet).problems
    assert (
        "region key 'nbg1-1' is used by stacks second, third (sovereign:region.key); each region needs its own"
        in problems
    )
    assert any("region index '1' is used by stacks second, third" in p for p in problems)
    assert any(p.startswith("stack third (secondary): no RTZ vCluster") for p in problems)
    assert any(p.startswith("vClusters 5/6 (MGMT 1/1, DMZ 3/3, RTZ 1/2)") for p in problems)


def test_all_evaluates_every_stack_file_of_a_directory(tmp_path: Path) -> None:
    generate_fleet(tmp_path, 3)
    code, out, err = cli("--all", "--dir", str(tmp_path), "--jobs", "1")
    assert code == 0, err
    assert "vClusters 6/6 (MGMT 1/1, DMZ 3/3, RTZ 2/2)" in out
    assert "region-02  secondary  nbg1-2  2      10.44.0.0/16  10.98.0.0/16  dmz, rtz" in out
    assert "fleet OK" in out


def test_all_reports_a_stack_with_bad_config_by_key(tmp_path: Path) -> None:
    generate_fleet(tmp_path, 2)
    doc = yaml.safe_load((tmp_path / "Pulumi.region-01.yaml").read_text())
    doc["config"]["sovereign:controlPlane"]["count"] = 2
    (tmp_path / "Pulumi.region-01.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = cli("--all", "--dir", str(tmp_path), "--jobs", "1")
    assert code == 1
    assert "invalid sovereign configuration in stack 'region-01'" in err
    assert "      - sovereign:controlPlane.count = 2:" in err
    assert "Traceback" not in err


FAKE_PULUMI = """#!/bin/sh
# Fake Pulumi CLI: canned `pulumi stack output --json --stack NAME`.
[ "$1 $2 $3 $4" = "stack output --json --stack" ] || { echo "unexpected: $*" >&2; exit 2; }
case "$5" in
  primary) echo '{"role": "primary", "regionKey": "fsn1", "regionIndex": 0, "podCidr": "10.42.0.0/16", "serviceCidr": "10.96.0.0/16", "vclusters": ["dmz", "mgmt"], "kubeconfig": "[secret]"}' ;;
  second) echo '{"role": "%(second)s", "regionKey": "nbg1-1", "regionIndex": 1, "podCidr": "10.43.0.0/16", "serviceCidr": "10.97.0.0/16", "vclusters": ["dmz", "rtz"]}' ;;
  third) echo '{"role": "secondary", "regionKey": "hel1-2", "regionIndex": 2, "podCidr": "%(third_pod)s", "serviceCidr": "10.98.0.0/16", "vclusters": ["dmz", "rtz"]}' ;;
  *) echo "error: no stack named '$5' found" >&2; exit 255 ;;
esac
"""


@pytest.fixture
def live_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(
        second_role: str = "secondary",
        stacks: tuple[str, ...] = ("primary", "second", "third"),
        third_pod: str = "10.44.0.0/16",
    ) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        fake = bin_dir / "pulumi"
        fake.write_text(FAKE_PULUMI % {"second": second_role, "third_pod": third_pod})
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        # The fake on PATH, not a CLI this checkout may have installed for itself.
        monkeypatch.setattr("tools.pulumi_cli.INSTALL_DIR", str(tmp_path / "cli"))
        fleet = tmp_path / "fleet"
        fleet.mkdir(exist_ok=True)
        for stack in stacks:
            (fleet / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
        return fleet

    return make


def test_live_checks_the_deployed_outputs(live_fleet) -> None:
    code, out, err = cli("--all", "--live", "--dir", str(live_fleet()))
    assert code == 0, err
    assert "deployed outputs" in out
    assert "vClusters 6/6 (MGMT 1/1, DMZ 3/3, RTZ 2/2)" in out
    assert "[secret]" not in out


def test_live_refuses_two_deployed_primaries(live_fleet) -> None:
    code, _, err = cli("--all", "--live", "--dir", str(live_fleet("primary")))
    assert code == 1
    assert "found 2 (primary, second)" in err


def test_live_refuses_overlapping_deployed_pod_cidrs(live_fleet) -> None:
    code, _, err = cli("--all", "--live", "--dir", str(live_fleet(third_pod="10.42.128.0/17")))
    assert code == 1
    assert "10.42.128.0/17" in err
    assert "10.42.0.0/16" in err


def test_live_reports_a_stack_that_is_not_deployed(live_fleet) -> None:
    code, _, err = cli("--all", "--live", "--dir", str(live_fleet(stacks=("primary", "ghost"))))
    assert code == 1
    assert "pulumi stack output --stack ghost failed: error: no stack named 'ghost' found" in err


def test_live_without_the_pulumi_cli_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools import pulumi_cli

    (tmp_path / "Pulumi.primary.yaml").write_text("config: {}\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pulumi_cli, "INSTALL_DIR", str(tmp_path / "cli"))
    code, _, err = cli("--all", "--live", "--dir", str(tmp_path))
    assert code == 2
    assert "the Pulumi CLI is not installed" in err
