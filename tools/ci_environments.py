"""Check a GitHub repository's settings against .github/environments.yaml (issue 16 §1).

    python -m tools.ci_environments OWNER/REPO      exit 0 as described, 1 with each difference

GitHub does not read the workflows' environment rules from the repository: an admin sets them in
Settings > Environments. This reads them back through the GitHub CLI (`gh api`, GET only, with
the caller's login) and names every difference:
- a repository-level Actions secret (any: every secret belongs to an environment);
- an environment the workflows use that does not exist (`preview`, `drift`, one per stack file);
- a region or drift environment whose deployment branches are not exactly `main`;
- a `preview` environment without required reviewers, or that lets the author approve a run.

Response shapes: GitHub REST "List environments" (`environments[].protection_rules[]` with
`type` `required_reviewers` | `branch_policy`, `prevent_self_review`, `reviewers`;
`deployment_branch_policy` `{protected_branches, custom_branch_policies}` or null), "List
deployment branch policies" (`branch_policies[].name`, `type`), "List repository secrets"
(`total_count`, `secrets[].name`) (docs.github.com/rest/deployments, /rest/actions/secrets;
checked 2026-12-04). The Hetzner tokens' scopes are not visible to GitHub: check them in the
Hetzner Console.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import yaml

from tools.stacks import ROOT, stack_names

# path -> the decoded JSON answer (raises on HTTP errors)
Api = Callable[[str], Any]

STACK_ENV: Final = "<stack>"


def expected(directory: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Environment name -> its description, `<stack>` expanded to every stack file."""
    data = yaml.safe_load((directory / ".github" / "environments.yaml").read_text())
    described = cast(dict[str, dict[str, Any]], data["environments"])
    out = {name: env for name, env in described.items() if name != STACK_ENV}
    for stack in stack_names(directory):
        out[stack] = described[STACK_ENV]
    return out


def _rules(env: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    rules = cast(list[Mapping[str, Any]], env.get("protection_rules") or [])
    return [rule for rule in rules if rule.get("type") == kind]


def problems(repo: str, api: Api, directory: Path = ROOT) -> list[str]:
    found: list[str] = []
    secrets = cast(Mapping[str, Any], api(f"repos/{repo}/actions/secrets"))
    names = [
        str(s.get("name")) for s in cast(list[Mapping[str, Any]], secrets.get("secrets") or [])
    ]
    if names:
        found.append(
            f"repository-level secrets {', '.join(sorted(names))}: any branch's workflow can read "
            f"them. Move each into the environments that need it, then delete it here."
        )
    listed = cast(Mapping[str, Any], api(f"repos/{repo}/environments?per_page=100"))
    live = {
        str(env.get("name")): env
        for env in cast(list[Mapping[str, Any]], listed.get("environments") or [])
    }
    for name, want in sorted(expected(directory).items()):
        env = live.get(name)
        if env is None:
            found.append(
                f"environment {name!r} does not exist (used by {', '.join(want['workflows'])})"
            )
            continue
        if want["deploymentBranches"] == ["main"]:
            policy = cast(Mapping[str, Any] | None, env.get("deployment_branch_policy"))
            branches: list[str] = []
            if policy and policy.get("custom_branch_policies"):
                answer = cast(
                    Mapping[str, Any],
                    api(f"repos/{repo}/environments/{name}/deployment-branch-policies"),
                )
                branches = sorted(
                    f"{p.get('type', 'branch')}:{p.get('name')}"
                    for p in cast(list[Mapping[str, Any]], answer.get("branch_policies") or [])
                )
            if branches != ["branch:main"]:
                shown = (
                    "all branches"
                    if not policy
                    else "protected branches"
                    if policy.get("protected_branches")
                    else ", ".join(branches) or "none"
                )
                found.append(
                    f"environment {name!r} admits {shown}: set Deployment branches and tags to "
                    f"selected branches, exactly `main`"
                )
        if want.get("requiredReviewers") == "required":
            reviewers = _rules(env, "required_reviewers")
            if not reviewers or not any(rule.get("reviewers") for rule in reviewers):
                found.append(
                    f"environment {name!r} has no required reviewers: a maintainer must approve "
                    f"each run"
                )
            elif want.get("preventSelfReview") and not all(
                rule.get("prevent_self_review") for rule in reviewers
            ):
                found.append(
                    f"environment {name!r} lets the person who started a run approve it: turn on "
                    f"'Prevent self-review'"
                )
    return found


def gh_api(path: str) -> Any:
    proc = subprocess.run(
        ["gh", "api", "-H", "Accept: application/vnd.github+json", path],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gh api {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout or "{}")


def main(argv: Sequence[str] | None = None, *, api: Api = gh_api) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or "/" not in args[0]:
        sys.stderr.write("usage: python -m tools.ci_environments OWNER/REPO\n")
        return 2
    try:
        found = problems(args[0], api)
    except (RuntimeError, FileNotFoundError) as err:
        sys.stderr.write(f"ci_environments: {err}\n")
        return 2
    for problem in found:
        print(f"- {problem}")
    print("environments: as described" if not found else f"{len(found)} difference(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
