"""Stacks on disk, and one stack evaluated under mocks: the base every offline tool stands on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from tools.stack_file import PlanError, read_stack_file

__all__ = ["ROOT", "PlanError", "evaluate_stack", "read_stack_file", "require_stack", "stack_names"]

if TYPE_CHECKING:
    from config.models import StackConfig
    from tools.mockrun import Run

ROOT: Final = Path(__file__).resolve().parent.parent
# Stacks of `./sovereign e2e` are named e2e-<time><random> (tools/e2e.py).
E2E_PREFIX: Final = "e2e-"


def stack_names(directory: Path) -> list[str]:
    """Stacks of a project directory: one `Pulumi.<stack>.yaml` each."""
    names = (
        path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for path in directory.glob("Pulumi.*.yaml")
    )
    # A throwaway region `./sovereign e2e --keep` left behind is no region of the fleet.
    return sorted(name for name in names if not name.startswith(E2E_PREFIX))


def require_stack(stack: str, directory: Path) -> None:
    if not (directory / f"Pulumi.{stack}.yaml").is_file():
        known = " ".join(stack_names(directory)) or "(none)"
        raise PlanError(f"no Pulumi.{stack}.yaml in {directory}: stacks are {known}", code=2)


def evaluate_stack(stack: str, directory: Path = ROOT) -> tuple[StackConfig, Run]:
    """Validate the stack's committed config, then run the program under mocks.

    A `SovereignConfigError` (any `pulumi.RunError`) becomes a `PlanError` with its message:
    configuration a user can fix is reported by key, without a traceback.
    """
    from pulumi import RunError

    from checks.preflight import parse as parse_config
    from tools.mockrun import evaluate, offline_secrets, stack_config

    require_stack(stack, directory)
    # Secrets set with `--secret` are ciphertext here: the run gets stand-ins (Run.stand_ins).
    raw, secret = offline_secrets(stack_config(stack, directory))
    try:
        cfg = parse_config(raw, stack, secret)
        run = evaluate(stack, raw=raw, directory=directory)
    except RunError as err:
        raise PlanError(str(err)) from None
    if run.error is not None:
        raise PlanError(str(run.error))
    return cfg, run
