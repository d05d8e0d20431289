"""Entry point of the `sovereign-guardrails` policy pack.

    pulumi preview --stack primary --policy-pack policy/

The Pulumi CLI runs this directory with `runpy.run_path`, which puts only `policy/` on
sys.path. The vcluster-namespace-pod-security policy judges the vCluster pod with the program's
own Pod Security evaluator (components/pod_security.py), so the repository root must be
importable too: the policy and the program's preflight then share one definition of what
PodSecurity refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from policy.guardrails import PACK_NAME, policies  # noqa: E402 - needs REPO_ROOT on sys.path


def main() -> None:
    """Serve the pack to the engine (PolicyPack blocks, answering the engine's requests)."""
    PolicyPack(
        name=PACK_NAME,
        policies=policies(),
        enforcement_level=EnforcementLevel.MANDATORY,
        description="Sovereign guardrails for Hetzner, k3s and Helm resources.",
    )


if __name__ == "__main__":
    main()
