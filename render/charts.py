"""Chart pins: the charts every release installs, never a range."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """A pinned chart: never a range, so a preview means the same thing tomorrow."""

    name: str
    version: str
    repo: str
