"""What a newcomer reads when something is wrong: each message in the words of the fix.

Each test pins the wording a first-time user met on a fresh clone (issue 20 §2) so that the
old message, a traceback or a library's own words, cannot come back unnoticed.
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.preflight import parse
from config.errors import SovereignConfigError
from tests.helpers import set_cluster_tokens
from tools import plan
from tools.fleet import Workspace
from tools.mockrun import stack_config
from tools.plan_fleet import generate_fleet

ROOT = Path(__file__).resolve().parent.parent


def message_for(stack: str = "primary", **changes: Any) -> str:
    """The config error of the committed stack with `changes` deep-set (dotted keys)."""
    raw = copy.deepcopy(stack_config(stack))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    with pytest.raises(SovereignConfigError) as err:
        parse(raw, stack)
    return str(err.value)


# ---- the stack file -------------------------------------------------------------------------


def broken_stack_dir(tmp_path: Path) -> Path:
    shutil.copyfile(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    text = (ROOT / "Pulumi.primary.yaml").read_text()
    # A list item pasted one space off: the mapping it sits in ends mid-line.
    text = text.replace("    role: primary\n", "    role: primary\n   extra: [x\n", 1)
    (tmp_path / "Pulumi.primary.yaml").write_text(text)
    return tmp_path


def test_a_yaml_syntax_error_names_file_line_and_column_without_a_traceback(
    tmp_path: Path,
) -> None:
    directory = broken_stack_dir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = plan.main(["primary", "--dir", str(directory), "--json", "-"], out, err)
    assert code == 2
    first = err.getvalue().splitlines()[0]
    assert first.startswith("Pulumi.primary.yaml, line 7, column 4: not valid YAML"), first
    assert "Traceback" not in err.getvalue()
    assert "<unicode string>" not in err.getvalue()


def test_the_fleet_reports_a_yaml_syntax_error_by_file_and_line(tmp_path: Path) -> None:
    from tools.fleet import main as fleet_main

    directory = broken_stack_dir(tmp_path)
    err = io.StringIO()
    code = fleet_main(
        ["up", "--all", "--dir", str(directory)], out=io.StringIO(), err=err, environ={}
    )
    assert code == 2
    assert "Pulumi.primary.yaml, line 7, column 4: not valid YAML" in err.getvalue()


# ---- config messages ------------------------------------------------------------------------


def test_an_unknown_key_suggests_the_nearest_known_key() -> None:
    message = message_for(controlPlane__servertype="cpx32")
    assert (
        "sovereign:controlPlane.servertype = (value not shown): unknown key: did you mean "
        "serverType? "
        "Otherwise remove it" in message
    )


TOKEN = "tok-" + "Q" * 60


@pytest.mark.parametrize(
    ("changes", "path", "secret_key"),
    [
        ({"hcloudtoken": TOKEN}, "sovereign:hcloudtoken", "hcloudToken"),
        ({"hcloud": {"token": TOKEN}}, "sovereign:hcloud", "hcloudToken"),
        ({"backups__secretKey": TOKEN}, "sovereign:backups.secretKey", "backupsSecretKey"),
        ({"backups__accessKey": TOKEN}, "sovereign:backups.accessKey", "backupsAccessKey"),
        ({"backups__secretkey": TOKEN}, "sovereign:backups.secretkey", "backupsSecretKey"),
        (
            {"registryMirror__password": TOKEN},
            "sovereign:registryMirror.password",
            "registryMirrorPassword",
        ),
        (
            {"registryMirrorPasword": TOKEN},
            "sovereign:registryMirrorPasword",
            "registryMirrorPassword",
        ),
    ],
)
def test_a_mistyped_secret_key_is_named_and_its_value_never_shown(
    changes: dict[str, Any], path: str, secret_key: str
) -> None:
    message = message_for(**changes)
    assert TOKEN not in message
    assert TOKEN[:20] not in message
    assert (
        f"{path} = (value not shown): unknown key: did you mean the secret "
        f"sovereign:{secret_key}? It is a top-level key of its own, set with "
        f"`pulumi config set --secret sovereign:{secret_key} <value>`" in message
    )


def test_an_unknown_keys_value_is_never_shown() -> None:
    message = message_for(network__zzz="pw-not-for-logs", zzzKey="pw-not-for-logs-2")
    assert "pw-not-for-logs" not in message
    assert "sovereign:zzzKey = (value not shown): unknown key" in message
    # The top level's known keys include the secret ones, kept out of the models.
    listed = next(line for line in message.splitlines() if "sovereign:zzzKey" in line)
    for secret_key in ("backupsAccessKey", "hcloudToken", "registryMirrorPassword"):
        assert secret_key in listed, listed


def test_a_worker_pool_key_typo_is_named_without_a_spurious_required() -> None:
    message = message_for(
        workers__general={"servertype": "cpx32", "count": 1, "autoscale": {"min": 1}}
    )
    assert (
        "sovereign:workers.general.servertype = (value not shown): unknown key: did you mean "
        "serverType? Otherwise remove it" in message
    )
    assert (
        "sovereign:workers.general.autoscale = (value not shown): unknown key: did you mean "
        in message
    )
    assert "workers.general.serverType = (not set)" not in message
    # A key that is really missing still is required.
    assert "workers.general.serverType = (not set): required" in message_for(
        workers__general={"count": 1}
    )


def test_a_bad_pool_name_is_reported_at_its_path_with_the_name() -> None:
    message = message_for(workers__General_Pool={"serverType": "cpx32", "count": 1})
    assert "sovereign:workers.General_Pool = 'General_Pool': a pool name of 2-16" in message
    assert "[key]" not in message
    assert "(not set)" not in message


@pytest.mark.parametrize("value", [1, 0, "yes", "no", "on", "True", "1"])
def test_a_yes_no_key_takes_only_true_or_false(value: object) -> None:
    message = message_for(api__public=value)
    assert f"sovereign:api.public = {value!r}: true or false, without quotes" in message


def test_a_yes_no_key_takes_the_text_pulumi_config_set_may_store() -> None:
    raw = copy.deepcopy(stack_config("primary"))
    raw["api"] = {**raw.get("api", {}), "public": "false"}
    raw["teardown"] = "true"
    cfg = parse(raw, "primary")
    assert cfg.api.public is False
    assert cfg.teardown is True


def test_an_unknown_key_with_no_near_one_lists_the_known_keys() -> None:
    message = message_for(network__zzz="x")
    assert (
        "sovereign:network.zzz = (value not shown): unknown key; remove it (known here: cidr, "
        in message
    )


def test_a_number_where_text_belongs_says_to_quote_it_with_the_fields_example() -> None:
    message = message_for(controlPlane__k3sVersion=1.33)
    # The example is the one the field's description gives (it follows the pinned release).
    assert re.search(
        r"sovereign:controlPlane\.k3sVersion = 1\.33: text: write it in quotes, e\.g\. "
        r'k3sVersion: "v1\.\d+\.\d+\+k3s\d+"',
        message,
    ), message
    assert "Input should be" not in message


def test_a_single_value_where_a_list_belongs_shows_the_list_to_write() -> None:
    message = message_for(access__sshAllowedCidrs="203.0.113.7/32")
    assert (
        "sovereign:access.sshAllowedCidrs = '203.0.113.7/32': a list, even of one item: "
        'sshAllowedCidrs: ["203.0.113.7/32"]' in message
    )
    assert "Input should be" not in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"region__index": "first"}, "sovereign:region.index = 'first': a whole number"),
        ({"controlPlane__protect": "maybe"}, "= 'maybe': true or false, without quotes"),
        ({"region__location": "us-east-1"}, "one of 'fsn1', 'nbg1', 'hel1', 'ash', 'hil' or 'sin'"),
        ({"releases": {"timeoutSeconds": 5}}, "timeoutSeconds = 5: a number at least 60"),
    ],
)
def test_other_type_errors_say_what_to_write(changes: dict[str, Any], expected: str) -> None:
    message = message_for(**changes)
    assert expected in message
    assert "Input should be" not in message


def test_a_cross_field_error_names_the_field_not_the_whole_object() -> None:
    message = message_for(region__index=2)
    assert "sovereign:region.index = 2: the primary region has index 0" in message
    assert '{"role"' not in message
    message = message_for(region__key="hel1")
    assert "sovereign:region.key = 'hel1': must start with its location 'fsn1'" in message


def test_a_cidr_prefix_out_of_range_is_said_as_such() -> None:
    message = message_for(network__cidr="10.0.0.0/33")
    assert (
        "sovereign:network.cidr = '10.0.0.0/33': the prefix length is out of range: an IPv4 "
        "range takes /0 to /32" in message
    )
    message = message_for(access__sshAllowedCidrs=["2001:db8::/129"])
    assert "an IPv6 range takes /0 to /128" in message


def test_settings_of_a_vcluster_the_role_never_runs_are_refused() -> None:
    message = message_for(vclusters__rtz={"podSecurity": {"enforce": "privileged"}})
    assert (
        "sovereign:vclusters.rtz.podSecurity = (set): has no effect: RTZ (slot 59) runs only in "
        "secondary regions and this is a primary" in message
    )
    message = message_for("secondary", vclusters__mgmt={"telemetry": True})
    assert "sovereign:vclusters.mgmt.telemetry = (set): has no effect: MGMT (slot 58)" in message


# ---- ./sovereign's usage --------------------------------------------------------------------


def sovereign(*args: str) -> subprocess.CompletedProcess[str]:
    # None of these reach the virtualenv: they answer before it is built.
    return subprocess.run(
        ["bash", str(ROOT / "sovereign"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": os.environ.get("PATH", "")},
    )


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_prints_the_usage_and_exits_0(flag: str) -> None:
    proc = sovereign(flag)
    assert proc.returncode == 0
    assert "./sovereign up <stack>" in proc.stdout
    assert "./sovereign plan <stack>" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "a command is required"),
        (("up",), "up needs a stack"),
        (("preview", "--diff"), "preview needs a stack"),
        (("drift", "primary"), "drift takes --all or --stacks a,b"),
        (("frobnicate",), "unknown command 'frobnicate'"),
        (("login", "hetzner", "bucket"), "login hetzner <bucket> <fsn1|nbg1|hel1>"),
    ],
)
def test_a_usage_error_prints_the_usage_and_exits_2(args: tuple[str, ...], said: str) -> None:
    proc = sovereign(*args)
    assert proc.returncode == 2, proc.stderr
    assert f"./sovereign: {said}" in proc.stderr
    assert "./sovereign up <stack>" in proc.stderr
    # bash's own `${1:?...}` message named the script line: never again.
    assert "line " not in proc.stderr.split("\n", 1)[0]


# ---- the fleet ------------------------------------------------------------------------------


def test_plan_all_live_without_the_cli_says_the_tool_is_missing_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools import pulumi_cli

    generate_fleet(tmp_path, 3)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pulumi_cli, "INSTALL_DIR", "no-such-dir")
    out, err = io.StringIO(), io.StringIO()
    code = plan.main(["--all", "--live", "--dir", str(tmp_path)], out, err)
    assert code == 2
    assert err.getvalue().count("the Pulumi CLI is not installed") == 1
    assert "fleet check failed" not in err.getvalue()


def test_up_all_checks_for_a_token_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.fleet import main as fleet_main

    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse battery staple")
    monkeypatch.delenv("CI", raising=False)  # CI also wants each stack's committed salt

    generate_fleet(tmp_path, 2)
    started: list[str] = []

    def workspace(_dir: Path, _secrets: str) -> Workspace:
        started.append("workspace")
        raise AssertionError("no engine may start without a token")

    err = io.StringIO()
    code = fleet_main(
        ["up", "--all", "--dir", str(tmp_path)],
        out=io.StringIO(),
        err=err,
        workspace=workspace,
        environ={},
    )
    assert code == 2
    assert started == []
    assert "no Hetzner Cloud token for primary, region-01: set HCLOUD_TOKEN" in err.getvalue()


def test_a_token_in_every_stack_file_is_enough(tmp_path: Path) -> None:
    from tools.fleet import token_problem

    generate_fleet(tmp_path, 2)
    set_cluster_tokens(tmp_path)
    assert token_problem(tmp_path, ["primary"], {"HCLOUD_TOKEN": "t"}) is None
    path = tmp_path / "Pulumi.primary.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hcloud:token"] = {"secure": "v1:abc"}
    path.write_text(yaml.safe_dump(doc))
    assert token_problem(tmp_path, ["primary"], {}) is None
    problem = token_problem(tmp_path, ["primary", "region-01"], {})
    assert problem is not None
    assert problem.startswith("no Hetzner Cloud token for region-01:")


def test_a_stack_without_the_clusters_token_is_named_with_the_command_before_any_engine(
    tmp_path: Path,
) -> None:
    from tools.fleet import token_problem

    generate_fleet(tmp_path, 2)
    set_cluster_tokens(tmp_path)
    path = tmp_path / "Pulumi.region-01.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["config"]["sovereign:hcloudToken"]
    path.write_text(yaml.safe_dump(doc))
    problem = token_problem(tmp_path, ["primary", "region-01"], {"HCLOUD_TOKEN": "t"})
    assert problem is not None
    assert problem.startswith("no sovereign:hcloudToken (the cluster's own Hetzner token")
    assert "for region-01: per stack, pulumi config set --secret sovereign:hcloudToken " in problem
    assert "<token> --stack region-01 (the same token" in problem
    assert "primary" not in problem


def test_the_end_of_support_notice_names_the_stack_and_comes_once_per_fleet(
    tmp_path: Path,
) -> None:
    # A fleet on Kubernetes 1.33, past its upstream end of life (2026-06-28) and still
    # supported by the pinned Cilium and cert-manager lines: a notice, not a refusal.
    generate_fleet(tmp_path, 2)
    for path in tmp_path.glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["config"]["sovereign:controlPlane"]["k3sVersion"] = "v1.33.13+k3s2"
        path.write_text(yaml.safe_dump(doc))
    out, err = io.StringIO(), io.StringIO()
    code = plan.main(["--all", "--dir", str(tmp_path)], out, err)
    assert code == 0, err.getvalue()
    notices = [line for line in err.getvalue().splitlines() if "end of upstream support" in line]
    assert len(notices) == 1, err.getvalue()
    assert notices[0].startswith("warning: stacks primary, region-01: Kubernetes 1.33")
    single = io.StringIO()
    code = plan.main(["region-01", "--dir", str(tmp_path), "--json", "-"], io.StringIO(), single)
    assert code == 0, single.getvalue()
    assert "warning: stack region-01: Kubernetes 1.33" in single.getvalue()
