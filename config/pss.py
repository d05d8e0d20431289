"""The Pod Security Standards vocabulary shared by config, renderers, the plan and the policy pack.

Stdlib only: the policy pack imports it in its own virtualenv.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

Level = Literal["privileged", "baseline", "restricted"]
LEVELS: Final[tuple[Level, ...]] = get_args(Level)
VERSION_PATTERN: Final = re.compile(r"latest|v1\.(0|[1-9][0-9]*)")
LABEL_PREFIX: Final = "pod-security.kubernetes.io/"
MODES: Final = ("enforce", "audit", "warn")
