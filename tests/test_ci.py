"""CI credentials (issue 16 §1), the live preview comment (issue 17 §1), hashed requirements (§3).

The workflows are parsed and held to .github/environments.yaml: a secret only inside a job bound
to a GitHub environment that declares it, region and drift environments on `main` only, the
preview environment approved per run with a read-only Hetzner token, no `secrets: inherit`.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import ci_audit, ci_preview, stack_secrets
from tools.stacks import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
SECRET_REF = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
STACK_ENV = "<stack>"


def workflows() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def environments() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / ".github" / "environments.yaml").read_text())["environments"]


def job_environment(job: Mapping[str, Any]) -> str | None:
    env = job.get("environment")
    if isinstance(env, Mapping):
        env = env.get("name")
    if env is None:
        return None
    # A reusable workflow's job named after its stack: one environment per Pulumi.<stack>.yaml.
    return STACK_ENV if env == "${{ inputs.stack }}" else str(env)


def secret_refs(job: Mapping[str, Any]) -> set[str]:
    return set(SECRET_REF.findall(yaml.safe_dump(dict(job))))


def jobs_reading_secrets(
    flows: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, job_id, job)
        for name, flow in flows.items()
        for job_id, job in flow["jobs"].items()
        if secret_refs(job)
    ]


# ---- environments -----------------------------------------------------------------------------


def test_every_job_that_reads_a_secret_runs_in_an_environment_that_declares_it() -> None:
    flows = workflows()
    envs = environments()
    readers = jobs_reading_secrets(flows)
    assert {(n, j) for n, j, _ in readers} == {
        ("drift.yml", "drift"),
        ("e2e.yml", "e2e"),
        ("preview.yml", "live"),
        ("up-stack.yml", "up"),
    }
    for name, job_id, job in readers:
        env = job_environment(job)
        assert env is not None, f"{name} job {job_id} reads secrets outside an environment"
        assert env in envs, f"{name} job {job_id}: environment {env} is not described"
        assert name in envs[env]["workflows"]
        undeclared = secret_refs(job) - set(envs[env]["secrets"])
        assert not undeclared, f"{name} job {job_id} reads {undeclared}, not in {env}'s secrets"


def test_region_and_drift_environments_accept_only_main_and_the_preview_needs_approval() -> None:
    envs = environments()
    assert envs[STACK_ENV]["deploymentBranches"] == ["main"]
    assert envs["drift"]["deploymentBranches"] == ["main"]
    assert envs[STACK_ENV]["hetznerToken"] == "read-write"
    # Only the region environments hold a token that can change Hetzner resources.
    assert envs["preview"]["hetznerToken"] == "read"
    assert envs["drift"]["hetznerToken"] == "read"
    assert envs["preview"]["requiredReviewers"] == "required"
    assert envs["preview"]["preventSelfReview"] is True


def test_the_up_job_runs_in_the_environment_named_after_its_stack() -> None:
    job = workflows()["up-stack.yml"]["jobs"]["up"]
    assert job["environment"] == "${{ inputs.stack }}"


def test_no_workflow_inherits_or_passes_secrets_to_a_called_workflow() -> None:
    for name, flow in workflows().items():
        for job_id, job in flow["jobs"].items():
            if "uses" in job:
                assert "secrets" not in job, f"{name} job {job_id} hands secrets to {job['uses']}"
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    assert not re.search(r"^\s*secrets:\s*inherit", text, re.M)


def test_every_pull_request_gets_the_offline_plan_with_no_secret_at_all() -> None:
    flow = workflows()["preview.yml"]
    on = flow.get("on", flow.get(True))  # PyYAML reads the key `on` as True
    assert set(on) == {"pull_request"}
    plan = flow["jobs"]["plan"]
    assert "if" not in plan
    assert job_environment(plan) is None
    assert not secret_refs(plan)
    runs = "\n".join(step.get("run", "") for step in plan["steps"])
    assert './sovereign plan "$STACK" --json' in runs
    assert "./sovereign plan --diff" in runs


def test_the_live_preview_runs_only_for_this_repository_in_the_preview_environment() -> None:
    live = workflows()["preview.yml"]["jobs"]["live"]
    assert job_environment(live) == "preview"
    assert live["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    runs = "\n".join(step.get("run", "") for step in live["steps"])
    assert "python -m tools.ci_preview" in runs


def test_security_doc_states_each_environment_and_its_branch_policy() -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    for name, env in environments().items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/security.md has no row for environment {name}"
        branches = env["deploymentBranches"]
        assert ("`main` only" in row) == (branches == ["main"]), row
        assert env["hetznerToken"] in row, row


def test_zizmor_reports_no_secret_finding_and_a_clean_default_audit() -> None:
    assert ci_audit.problems(WORKFLOWS) == []


def test_zizmor_audit_catches_a_repository_secret_and_an_inherit(tmp_path: Path) -> None:
    flow = tmp_path / "bad.yml"
    flow.write_text(
        "name: bad\non: push\npermissions: {}\njobs:\n"
        "  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo\n        env:\n          T: ${{ secrets.HCLOUD_TOKEN }}\n"
        "  b:\n    uses: ./.github/workflows/up-stack.yml # zizmor: ignore[self-repository] test\n"
        "    secrets: inherit\n"
    )
    found = ci_audit.problems(flow)
    assert any("secrets-outside-env" in f and f.startswith("auditor") for f in found), found
    assert any("secrets-inherit" in f for f in found), found


# ---- the passphrase and the salt --------------------------------------------------------------


def a_salt() -> str:
    """A well-formed passphrase salt (format only: the test needs no real passphrase)."""
    b64 = base64.b64encode
    salt, nonce, sealed = b64(os.urandom(8)), b64(os.urandom(12)), b64(os.urandom(22))
    return f"v1:{salt.decode()}:v1:{nonce.decode()}:{sealed.decode()}"


def stack_dir(tmp_path: Path, **extra: str) -> Path:
    text = (ROOT / "Pulumi.primary.yaml").read_text()
    for key, value in extra.items():
        text = f"{key}: {value}\n" + text
    (tmp_path / "Pulumi.primary.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no passphrase: set PULUMI_CONFIG_PASSPHRASE"),
        ({"PULUMI_CONFIG_PASSPHRASE": ""}, "PULUMI_CONFIG_PASSPHRASE is set but empty"),
        ({"PULUMI_CONFIG_PASSPHRASE": "  \n"}, "PULUMI_CONFIG_PASSPHRASE is set but empty"),
    ],
)
def test_an_unset_or_empty_passphrase_is_refused(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    found = stack_secrets.problems(["primary"], env, directory=stack_dir(tmp_path))
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_a_passphrase_file_counts_only_when_it_holds_a_passphrase(tmp_path: Path) -> None:
    directory = stack_dir(tmp_path)
    phrase = tmp_path / "phrase"
    phrase.write_text("\n")
    env = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase)}
    assert "is empty" in stack_secrets.problems(["primary"], env, directory=directory)[0]
    phrase.write_text("a long passphrase\n")
    assert stack_secrets.problems(["primary"], env, directory=directory) == []
    assert (
        stack_secrets.problems(["primary"], {"PULUMI_CONFIG_PASSPHRASE": "x"}, directory=directory)
        == []
    )


def test_a_kms_secrets_provider_needs_no_passphrase(tmp_path: Path) -> None:
    directory = stack_dir(tmp_path, secretsprovider="awskms://alias/sovereign")
    assert stack_secrets.problems(["primary"], {"CI": "true"}, directory=directory) == []


def test_ci_refuses_a_stack_file_without_its_salt_and_a_person_may_create_one(
    tmp_path: Path,
) -> None:
    directory = stack_dir(tmp_path)
    env = {"PULUMI_CONFIG_PASSPHRASE": "a long passphrase"}
    assert stack_secrets.problems(["primary"], env, directory=directory) == []
    found = stack_secrets.problems(["primary"], {**env, "CI": "true"}, directory=directory)
    assert len(found) == 1
    assert found[0].startswith("Pulumi.primary.yaml has no encryptionsalt")
    assert "./sovereign salt primary" in found[0]


def test_a_committed_salt_passes_in_ci_and_a_mangled_one_is_refused(tmp_path: Path) -> None:
    env = {"PULUMI_CONFIG_PASSPHRASE": "a long passphrase", "CI": "true"}
    good = tmp_path / "good"
    good.mkdir()
    stack_dir(good, encryptionsalt=a_salt())
    assert stack_secrets.problems(["primary"], env, directory=good) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    stack_dir(bad, encryptionsalt="v1:c2FsdA==:v1:bm9uY2U=:eA==")  # 4-byte salt, 5-byte nonce
    found = stack_secrets.problems(["primary"], env, directory=bad)
    assert len(found) == 1
    assert "is not a Pulumi passphrase salt" in found[0]


def test_the_fleet_refuses_an_empty_passphrase_before_it_selects_any_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from tools.fleet import main

    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    stack_dir(tmp_path)
    selected: list[str] = []

    class Refusing:
        def stack(self, name: str) -> Any:
            selected.append(name)
            raise AssertionError("a stack was selected")

    err = io.StringIO()
    code = main(
        ["up", "--all", "--dir", str(tmp_path), "--log-dir", str(tmp_path / "logs")],
        out=io.StringIO(),
        err=err,
        workspace=lambda _d, _s: Refusing(),
    )
    assert code == 2
    assert err.getvalue().startswith("sovereign up: PULUMI_CONFIG_PASSPHRASE is set but empty")
    assert selected == []


def test_the_cli_checks_the_passphrase_before_the_backend_is_touched() -> None:
    script = (ROOT / "sovereign").read_text()
    single = script[script.index('    [ "$cmd" != drift ] || usage_error') :]
    guard = single.index("-m tools.stack_secrets")
    assert guard < single.index("default_backend")
    assert guard < single.index("pulumi config get")
    assert guard < single.index("pulumi stack select")


# ---- the live preview comment (issue 17 §1) ---------------------------------------------------


class Recorded:
    """Answers each command from recorded output by its first words; records every call."""

    def __init__(self, answers: Mapping[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        line = " ".join(argv)
        for prefix, answer in self.answers.items():
            if line.startswith(prefix):
                return answer
        raise AssertionError(f"unexpected command {line}")


ENV = {"PULUMI_CONFIG_PASSPHRASE": "a long passphrase"}
OFFLINE = "#### Resources\n| op | resource |\n|---|---|\n| + create | `hcloud:index/server:Server` omantel-fsn1-cp-1 |"
# pulumi-kubernetes' wording when the cluster does not answer (recorded from its error path).
UNREACHABLE_OUTPUT = (
    "Previewing update (primary):\n"
    "    kubernetes:helm.sh/v3:Release cilium  error: kubernetes cluster unreachable: Get "
    '"https://203.0.113.10:6443/version": dial tcp 203.0.113.10:6443: i/o timeout\n'
    "error: preview failed\n"
)


def test_a_stack_missing_from_the_backend_gets_its_offline_plan_and_is_never_created() -> None:
    run = Recorded(
        {
            "pulumi stack select": (255, "error: no stack named 'hel1-3' found\n"),
            "./sovereign plan --diff": (0, OFFLINE),
        }
    )
    result = ci_preview.preview("hel1-3", "abc1234", run, ENV)
    assert result.status == 0
    assert result.comment.startswith("<!-- sovereign-preview:hel1-3 -->")
    assert "**it will be created on merge**" in result.comment
    assert OFFLINE in result.comment
    assert ["./sovereign", "plan", "--diff", "abc1234", "hel1-3"] in run.calls
    # select, never select --create or init, and no preview against a stack that is not there
    assert all("--create" not in call and "init" not in call for call in run.calls)
    assert not any(call[:2] == ["pulumi", "preview"] for call in run.calls)


def test_a_cluster_that_does_not_answer_gets_the_hetzner_diff_the_offline_plan_and_why() -> None:
    hetzner = "~ hcloud:index/firewall:Firewall omantel-fsn1 update"
    run = Recorded(
        {
            "pulumi stack select": (0, ""),
            f"pulumi preview --stack primary {' '.join(ci_preview.PREVIEW_FLAGS)} --target": (
                0,
                hetzner,
            ),
            "pulumi preview --stack primary": (255, UNREACHABLE_OUTPUT),
            "./sovereign plan --diff": (0, OFFLINE),
        }
    )
    result = ci_preview.preview("primary", "abc1234", run, ENV)
    assert result.status == 0
    assert "**The Kubernetes part could not be previewed**" in result.comment
    assert "dial tcp 203.0.113.10:6443: i/o timeout" in result.comment
    assert hetzner in result.comment
    assert OFFLINE in result.comment
    targeted = [c for c in run.calls if "--target" in c]
    assert len(targeted) == 1
    assert targeted[0][targeted[0].index("--target") + 1] == "**hcloud:index/**"
    assert "--policy-pack" in targeted[0]


def test_a_preview_that_fails_for_another_reason_fails_the_job_with_its_error() -> None:
    out = "error: hcloud: unable to authenticate (unauthorized)\n"
    run = Recorded({"pulumi stack select": (0, ""), "pulumi preview": (255, out)})
    result = ci_preview.preview("primary", "abc1234", run, ENV)
    assert result.status == 1
    assert "unable to authenticate" in result.comment
    assert "could not be previewed" not in result.comment


def test_a_good_preview_is_commented_with_the_policy_pack_on() -> None:
    run = Recorded(
        {"pulumi stack select": (0, ""), "pulumi preview": (0, "Resources: 42 unchanged")}
    )
    result = ci_preview.preview("primary", "abc1234", run, ENV)
    assert result.status == 0
    assert "Resources: 42 unchanged" in result.comment
    preview = next(c for c in run.calls if c[:2] == ["pulumi", "preview"])
    assert preview[preview.index("--policy-pack") + 1] == "policy"


def test_the_live_preview_refuses_an_empty_passphrase_before_any_pulumi_command() -> None:
    run = Recorded({})
    result = ci_preview.preview("primary", "abc1234", run, {"PULUMI_CONFIG_PASSPHRASE": ""})
    assert result.status == 1
    assert "set but empty" in result.comment
    assert run.calls == []


def test_a_hetzner_outage_is_not_taken_for_an_unreachable_cluster() -> None:
    assert ci_preview.unreachable_reason(UNREACHABLE_OUTPUT) is not None
    outage = 'error: Get "https://api.hetzner.cloud/v1/servers": dial tcp: i/o timeout'
    assert ci_preview.unreachable_reason(outage) is None


# ---- hashed requirements (issue 16 §3) --------------------------------------------------------

REQUIREMENTS = [
    ROOT / "requirements.txt",
    ROOT / "requirements-dev.txt",
    ROOT / "requirements-ci.txt",
    ROOT / "policy" / "requirements.txt",
]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+) \\$")


def pinned(path: Path) -> dict[str, list[str]]:
    """package -> its hashes; fails on any requirement that is not an exact, hashed pin."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash=sha256:"):
            assert current is not None, f"{path.name}: a hash with no package"
            assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", stripped), stripped
            out[current].append(stripped)
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not `name==version \\` followed by hashes"
        current = match[1].lower().replace("_", "-")
        out[current] = []
    return out


@pytest.mark.parametrize("path", REQUIREMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_requirement_is_an_exact_pin_with_hashes_and_names_no_host(path: Path) -> None:
    packages = pinned(path)
    assert packages
    assert all(hashes for hashes in packages.values())
    assert not re.search(r"--(extra-)?index-url|--find-links|https?://", path.read_text())


def test_the_generated_files_pin_what_the_hand_written_ones_name() -> None:
    for source in (
        ROOT / "requirements.in",
        ROOT / "requirements-dev.in",
        ROOT / "policy" / "requirements.in",
    ):
        locked = pinned(source.with_suffix(".txt"))
        for line in source.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
            if match:
                name = match[1].lower().replace("_", "-")
                assert name in locked, (
                    f"{source.name}: {name} missing from {source.with_suffix('.txt').name}"
                )
    runtime = pinned(ROOT / "requirements.txt")
    dev = pinned(ROOT / "requirements-dev.txt")
    assert set(runtime) <= set(dev)


def test_every_install_requires_hashes() -> None:
    installs = [
        line
        for path in [ROOT / "sovereign", ROOT / ".ci" / "run", *WORKFLOWS.glob("*.yml")]
        for line in path.read_text().splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]
    assert len(installs) >= 6
    for line in installs:
        assert re.search(r"--require-hashes -r (requirements\S*\.txt|\"\$req\")", line), line


# ---- ./sovereign itself, with a stand-in `pulumi` that records what reaches it ----------------

FAKE_PULUMI = """#!/usr/bin/env bash
# `pulumi version`: tools/pulumi_cli.py asks which CLI it found (not a call under test).
[ "$1" = version ] && { echo v0.0.0-fake; exit 0; }
printf '%s|%s\\n' "${PULUMI_BACKEND_URL:-}" "$*" >> "$PULUMI_LOG"
case "$1 $2" in
  "whoami "*) exit 1 ;;
  "stack init") echo "encryptionsalt: $FAKE_SALT" >> "Pulumi.${!#}.yaml" ;;
  "config get") [ "$3" != sovereign:hcloudToken ] || [ -z "${FAKE_NO_CLUSTER_TOKEN:-}" ] || exit 255 ;;
  "config set") cat > "$PULUMI_LOG.stdin" ;;
esac
exit 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the entry point over this checkout's tools, with a venv that is already built."""
    import shutil
    import sys

    (tmp_path / "sovereign").write_bytes((ROOT / "sovereign").read_bytes())
    (tmp_path / "sovereign").chmod(0o755)
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    (tmp_path / "Pulumi.primary.yaml").write_text((ROOT / "Pulumi.primary.yaml").read_text())
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    os.utime(tmp_path / "requirements.txt", (0, 0))
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv_bin / "python").chmod(0o755)
    (tmp_path / ".venv" / ".installed-requirements.txt").touch()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pulumi").write_text(FAKE_PULUMI)
    (fake / "pulumi").chmod(0o755)
    return tmp_path


def sovereign(project: Path, *args: str, **env: str) -> tuple[int, str, list[str]]:
    import subprocess

    log = project / "pulumi.log"
    log.touch()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "CI"))}
    full = {
        **base,
        "PATH": f"{project / 'bin'}:{os.environ['PATH']}",
        "PULUMI_LOG": str(log),
        "FAKE_SALT": a_salt(),
        "HCLOUD_TOKEN": "not-a-real-token",
        "PYTHONPATH": str(project),
        **env,
    }
    proc = subprocess.run(
        [str(project / "sovereign"), *args], env=full, capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stderr, log.read_text().splitlines()


@pytest.mark.parametrize("op", ["up", "preview"])
def test_an_empty_passphrase_stops_the_cli_before_any_pulumi_command(
    project: Path, op: str
) -> None:
    code, err, calls = sovereign(project, op, "primary", PULUMI_CONFIG_PASSPHRASE="")
    assert code == 2
    assert "PULUMI_CONFIG_PASSPHRASE is set but empty" in err
    assert calls == []


def test_ci_without_a_committed_salt_stops_the_cli_before_any_pulumi_command(project: Path) -> None:
    code, err, calls = sovereign(
        project, "up", "primary", PULUMI_CONFIG_PASSPHRASE="a long passphrase", CI="true"
    )
    assert code == 2
    assert "Pulumi.primary.yaml has no encryptionsalt" in err
    assert calls == []


def test_a_person_with_a_passphrase_gets_up_with_the_policy_pack(project: Path) -> None:
    code, err, calls = sovereign(project, "up", "primary", PULUMI_CONFIG_PASSPHRASE="a long one")
    assert code == 0, err
    assert calls[-1].endswith("|up --stack primary --policy-pack policy")


@pytest.mark.parametrize("op", ["up", "preview"])
def test_a_stack_without_the_clusters_token_stops_before_the_program_with_the_command(
    project: Path, op: str
) -> None:
    # No HCLOUD_TOKEN to take it from (the provider's token is in the stack's config).
    code, err, calls = sovereign(
        project,
        op,
        "primary",
        PULUMI_CONFIG_PASSPHRASE="a long one",
        FAKE_NO_CLUSTER_TOKEN="1",
        HCLOUD_TOKEN="",
    )
    assert code == 2
    assert "pulumi config set --secret sovereign:hcloudToken <token> --stack primary" in err
    assert calls[-1].endswith("|config get sovereign:hcloudToken --stack primary")
    assert not any(f"|{op} --stack" in call for call in calls)


@pytest.mark.parametrize("op", ["up", "preview"])
def test_a_stack_without_the_clusters_token_takes_hcloud_token_as_a_secret_through_stdin(
    project: Path, op: str
) -> None:
    token = "deployer-token-0123456789"
    code, err, calls = sovereign(
        project,
        op,
        "primary",
        PULUMI_CONFIG_PASSPHRASE="a long one",
        FAKE_NO_CLUSTER_TOKEN="1",
        HCLOUD_TOKEN=token,
    )
    assert code == 0, err
    sets = [call for call in calls if "|config set" in call]
    assert [call.split("|", 1)[1] for call in sets] == [
        "config set --secret sovereign:hcloudToken --stack primary"
    ]
    assert (project / "pulumi.log.stdin").read_text() == token
    assert not any(token in call for call in calls)
    assert token not in err
    assert "sovereign:hcloudToken set from HCLOUD_TOKEN, encrypted" in err
    assert calls[-1].endswith(f"|{op} --stack primary --policy-pack policy")


def test_the_help_is_the_whole_comment_block_at_the_top(project: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [str(project / "sovereign"), "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    head = (ROOT / "sovereign").read_text().splitlines()
    block = head[1 : head.index("set -euo pipefail")]
    assert proc.stdout.splitlines() == [line.removeprefix("#").removeprefix(" ") for line in block]
    assert "pulumi config set --secret sovereign:hcloudToken <token> --stack <stack>" in proc.stdout


def test_salt_makes_the_salt_on_a_throwaway_backend_and_never_twice(project: Path) -> None:
    code, err, calls = sovereign(project, "salt", "primary", PULUMI_CONFIG_PASSPHRASE="a long one")
    assert code == 0, err
    (call,) = calls
    backend, argv = call.split("|")
    assert backend.startswith("file:///")
    assert not (project / ".pulumi-state").exists()
    assert argv == "stack init --non-interactive --secrets-provider passphrase primary"
    doc = stack_secrets.stack_document("primary", project)
    assert stack_secrets.salt_problem("primary", doc, ci=True) is None
    code, err, calls = sovereign(project, "salt", "primary", PULUMI_CONFIG_PASSPHRASE="a long one")
    assert code == 2
    assert "already has an encryptionsalt" in err
    assert len(calls) == 1  # nothing new reached pulumi


# ---- the repository's settings read back (tools/ci_environments.py) ---------------------------

REPO = "openova-io/sovereign"


def github(
    *,
    repo_secrets: Sequence[str] = (),
    branches: Mapping[str, list[str] | None] | None = None,
    preview_reviewers: bool = True,
    self_review: bool = False,
    missing: Sequence[str] = (),
) -> dict[str, Any]:
    """GitHub's answers (REST shapes) for a repository set up as described, unless told."""
    branches = {
        "primary": ["main"],
        "secondary": ["main"],
        "drift": ["main"],
        "e2e": ["main"],
        **(branches or {}),
    }
    envs: list[dict[str, Any]] = []
    answers: dict[str, Any] = {
        f"repos/{REPO}/actions/secrets": {
            "total_count": len(repo_secrets),
            "secrets": [{"name": n, "created_at": "2026-01-01T00:00:00Z"} for n in repo_secrets],
        }
    }
    for name in ("preview", "drift", "e2e", "primary", "secondary"):
        if name in missing:
            continue
        rules: list[dict[str, Any]] = []
        policy: dict[str, Any] | None = None
        if name == "preview" and preview_reviewers:
            rules.append(
                {
                    "id": 1,
                    "node_id": "GA_1",
                    "type": "required_reviewers",
                    "prevent_self_review": not self_review,
                    "reviewers": [{"type": "Team", "reviewer": {"slug": "maintainers"}}],
                }
            )
        wanted = branches.get(name)
        if wanted is not None:
            policy = {"protected_branches": False, "custom_branch_policies": True}
            rules.append({"id": 2, "node_id": "GA_2", "type": "branch_policy"})
            answers[f"repos/{REPO}/environments/{name}/deployment-branch-policies"] = {
                "total_count": len(wanted),
                "branch_policies": [{"id": 9, "name": b, "type": "branch"} for b in wanted],
            }
        envs.append(
            {"id": 7, "name": name, "protection_rules": rules, "deployment_branch_policy": policy}
        )
    answers[f"repos/{REPO}/environments?per_page=100"] = {
        "total_count": len(envs),
        "environments": envs,
    }
    return answers


def check(answers: Mapping[str, Any]) -> list[str]:
    from tools import ci_environments

    return ci_environments.problems(REPO, lambda path: answers[path])


def test_a_repository_set_up_as_described_passes() -> None:
    assert check(github()) == []


def test_a_repository_secret_is_named() -> None:
    (problem,) = check(github(repo_secrets=["PULUMI_CONFIG_PASSPHRASE"]))
    assert problem.startswith("repository-level secrets PULUMI_CONFIG_PASSPHRASE")


@pytest.mark.parametrize(
    ("name", "branches", "shown"),
    [
        ("primary", None, "all branches"),
        ("drift", ["main", "release/*"], "branch:main, branch:release/*"),
        ("secondary", [], "none"),
    ],
)
def test_region_and_drift_environments_must_admit_exactly_main(
    name: str, branches: list[str] | None, shown: str
) -> None:
    (problem,) = check(github(branches={name: branches}))
    assert problem == (
        f"environment {name!r} admits {shown}: set Deployment branches and tags to selected "
        f"branches, exactly `main`"
    )


def test_the_preview_environment_needs_reviewers_who_are_not_the_author() -> None:
    (problem,) = check(github(preview_reviewers=False))
    assert "'preview' has no required reviewers" in problem
    (problem,) = check(github(self_review=True))
    assert "Prevent self-review" in problem


def test_a_missing_environment_is_named_with_its_workflow() -> None:
    (problem,) = check(github(missing=["secondary"]))
    assert problem == "environment 'secondary' does not exist (used by up-stack.yml)"


# How pytest is told to skip or expect a failure, in any of its spellings.
SKIP = re.compile(r"\b(skip|skipif|xfail|importorskip)\s*\(|mark\.(skip|skipif|xfail)\b")


def test_no_test_is_skipped_or_expected_to_fail() -> None:
    # A skip turns a red check green; a missing tool fails instead (tests/helpers.py).
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SKIP.search(line) and "SKIP = re.compile" not in line
    ]
    assert found == []


def test_basedpyright_checks_every_python_package_but_the_tests() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["basedpyright"]
    packages = {p.parent.name for p in ROOT.glob("*/*.py") if not p.parent.name.startswith(".")}
    assert config["typeCheckingMode"] == "strict"
    assert set(config["include"]) == {"__main__.py", *packages} - {"tests"}
