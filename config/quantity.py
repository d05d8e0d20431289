"""Kubernetes resource quantities (`500m`, `2`, `384Mi`, `5Gi`): the grammar and their value.

Only the forms a quota or a limit is written in: a plain decimal with an optional SI or binary
suffix (k8s.io/apimachinery resource.Quantity also takes exponents, which nobody types here).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

_QUANTITY: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?")
_SUFFIX: Final = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
}


def quantity(value: str) -> str:
    """Validator: a quantity such as 500m, 2, 384Mi or 5Gi."""
    if not _QUANTITY.fullmatch(value):
        raise ValueError("a Kubernetes quantity such as 500m, 2, 384Mi or 5Gi")
    return value


def parse(value: str | int | float) -> Fraction:
    """The quantity's value in base units (cores, bytes)."""
    if isinstance(value, int | float):
        return Fraction(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Fraction(match.group(1)) * _SUFFIX[match.group(2) or ""]
