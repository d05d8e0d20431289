"""CI: one stack's live preview comment, whatever state the stack and its cluster are in.

    python -m tools.ci_preview STACK --base SHA --out DIR     writes DIR/comment.md; exit 0 or 1

Runs in preview.yml's `live` job (environment `preview`: a maintainer approved the run, the
Hetzner token is read-only). Every pull request gets a comment, marked
`<!-- sovereign-preview:STACK -->` so later pushes update it in place:

- **Stack in the backend, cluster answers:** `pulumi preview --diff` with the policy pack.
- **Stack not in the backend** (the PR adds its `Pulumi.<stack>.yaml`): its offline plan and a
  line saying that the first deploy after merge creates it. The preview selects the stack and
  never creates it: a preview that created stacks would leave one behind for every abandoned
  pull request, and would let an unmerged PR choose the stack's name in the shared backend
  before review; a stack is created once, by `up` from `main` (deploy.yml).
- **Cluster does not answer** (being rebuilt, or its firewall does not admit GitHub's hosted
  runners: 6443 is open only to `apiAllowedCidrs`): the preview of the Hetzner resources alone
  (`--target '**hcloud:index/**'`: Pulumi's URN globs, where `**` matches anything), the offline
  plan against the base, and a plain statement that the Kubernetes part could not be previewed,
  with the error that says why.
- **Anything else fails:** the error, and exit 1 (the job fails).

The commands go through a `Runner`, so the decisions are tested on recorded output
(tests/test_ci.py) and the real run is the same code.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tools import stack_secrets
from tools.stacks import ROOT

# (argv) -> (exit status, stdout and stderr together)
Runner = Callable[[Sequence[str]], tuple[int, str]]

HETZNER_TARGET: Final = "**hcloud:index/**"
PREVIEW_FLAGS: Final = (
    "--diff",
    "--non-interactive",
    "--color",
    "never",
    "--policy-pack",
    "policy",
)
MISSING_STACK: Final = re.compile(r"no stack named '[^']*' found|stack '[^']*' not found", re.I)
# How an unreachable Kubernetes API shows in pulumi-kubernetes and Helm errors. A network error
# counts only on a line that is about the cluster, so a Hetzner API outage is not taken for it.
UNREACHABLE: Final = re.compile(
    r"cluster(?: is)? unreachable|unable to (?:load schema|connect to the server)"
    r"|dial tcp|i/o timeout|connection refused|no route to host|tls handshake timeout"
    r"|context deadline exceeded|failed to discover|server could not find",
    re.I,
)
ABOUT_CLUSTER: Final = re.compile(r"kubernetes|k8s|helm|cluster|:6443|apiserver|vcluster", re.I)
LIMIT: Final = 55_000  # characters of command output in a comment (GitHub caps at 65536)


def marker(stack: str) -> str:
    return f"<!-- sovereign-preview:{stack} -->"


def unreachable_reason(output: str) -> str | None:
    """The error line that says the cluster's API did not answer, or None."""
    for line in output.splitlines():
        if UNREACHABLE.search(line) and ABOUT_CLUSTER.search(line):
            text = line.strip()
            return text if len(text) <= 300 else text[:297] + "..."
    return None


def _fenced(text: str) -> str:
    text = text.strip("\n")
    if len(text) > LIMIT:
        text = text[:LIMIT] + "\n... (truncated: the whole output is in the job log)"
    return f"```\n{text}\n```"


@dataclass(frozen=True, slots=True)
class Result:
    comment: str
    status: int  # 0: the comment says all there is; 1: the preview failed


def _offline(stack: str, base: str, run: Runner) -> str:
    status, out = run(["./sovereign", "plan", "--diff", base, stack])
    if status != 0:
        return f"The offline plan failed as well (exit {status}):\n\n{_fenced(out)}"
    return out.strip()


def preview(stack: str, base: str, run: Runner, env: Mapping[str, str]) -> Result:
    head = f"{marker(stack)}\n### Live preview: stack `{stack}`\n\n"
    refused = stack_secrets.problems([stack], env)
    if refused:
        lines = "\n".join(f"- {problem}" for problem in refused)
        return Result(f"{head}Not previewed: nothing was sent to the backend.\n\n{lines}\n", 1)

    status, out = run(["pulumi", "stack", "select", stack, "--non-interactive"])
    if status != 0 and MISSING_STACK.search(out):
        return Result(
            f"{head}Stack `{stack}` is not in the state backend yet: **it will be created on "
            f"merge**, by the first deploy from `main` (deploy.yml). A preview never creates a "
            f"stack, so this is its offline plan (`./sovereign plan`, no cloud access):\n\n"
            f"{_offline(stack, base, run)}\n",
            0,
        )
    if status != 0:
        return Result(f"{head}`pulumi stack select {stack}` failed:\n\n{_fenced(out)}\n", 1)

    status, out = run(["pulumi", "preview", "--stack", stack, *PREVIEW_FLAGS])
    if status == 0:
        return Result(f"{head}`pulumi preview --diff` with the policy pack:\n\n{_fenced(out)}\n", 0)
    reason = unreachable_reason(out)
    if reason is None:
        return Result(f"{head}`pulumi preview` failed (exit {status}):\n\n{_fenced(out)}\n", 1)

    target = ["--target", HETZNER_TARGET]
    status, hetzner = run(["pulumi", "preview", "--stack", stack, *PREVIEW_FLAGS, *target])
    hetzner_part = (
        f"**Hetzner resources** (`pulumi preview --target '{HETZNER_TARGET}'`):\n\n"
        f"{_fenced(hetzner)}"
        if status == 0
        else f"The Hetzner-level preview failed as well (exit {status}):\n\n{_fenced(hetzner)}"
    )
    return Result(
        f"{head}**The Kubernetes part could not be previewed**: the cluster's API did not "
        f"answer this runner. The cluster may be being rebuilt, or its firewall does not admit "
        f"GitHub's hosted runners (TCP 6443 is open only to `apiAllowedCidrs`). The error:\n\n"
        f"{_fenced(reason)}\n\n{hetzner_part}\n\n"
        f"**Offline plan** against the base (`./sovereign plan`, no cloud access; it includes "
        f"the Kubernetes objects the program would declare):\n\n{_offline(stack, base, run)}\n",
        0 if status == 0 else 1,
    )


def subprocess_runner(cwd: Path) -> Runner:
    def run(argv: Sequence[str]) -> tuple[int, str]:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
        sys.stdout.write(proc.stdout + proc.stderr)
        return proc.returncode, proc.stdout + proc.stderr

    return run


def main(argv: Sequence[str] | None = None, *, run: Runner | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ci_preview")
    parser.add_argument("stack")
    parser.add_argument("--base", required=True, help="the pull request's base commit")
    parser.add_argument("--out", type=Path, required=True, help="directory for comment.md")
    args = parser.parse_args(argv)
    result = preview(args.stack, args.base, run or subprocess_runner(ROOT), os.environ)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comment.md").write_text(result.comment)
    return result.status


if __name__ == "__main__":
    sys.exit(main())
