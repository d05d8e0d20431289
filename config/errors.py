"""The one exception type for mistakes a user can fix in stack configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid key: where it is, what was given, what is allowed."""

    path: str
    value: str
    allowed: str

    def render(self) -> str:
        return f"  - {self.path} = {self.value}: {self.allowed}"


class FieldError(ValueError):
    """A check across an object's keys that one key fails: the error names that key.

    Raised in a model validator, it keeps the report on `sovereign:region.index = 2` instead
    of the whole `sovereign:region` object.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class SovereignConfigError(pulumi.RunError):
    """Raised before any resource is declared.

    It derives from `pulumi.RunError` so the Pulumi CLI prints the message alone, without the
    Python traceback that would bury the key paths users need.
    """

    def __init__(self, problems: Sequence[Problem], stack: str = "") -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        where = f" in stack {stack!r}" if stack else ""
        lines = [f"invalid sovereign configuration{where} ({len(self.problems)} problem(s)):"]
        lines += [problem.render() for problem in self.problems]
        super().__init__("\n".join(lines))
