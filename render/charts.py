"""Chart pins: the charts every release installs, never a range, and their vendored packages.

`pulumi up` installs each release from its package in `render/charts/` (a local chart path, no
chart repository), after `render.pins.verified` has checked the package's sha256: the bytes the
tests and the offline plan rendered are the bytes Helm installs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from render.pins import CHARTS_DIR

# Upstream packages and values schemas with their provenance (SOURCES.md, vendor.yaml), so a
# clone renders, checks and deploys every chart without the steering repository beside it.
VENDOR_DIR: Final = CHARTS_DIR


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """A pinned chart: never a range, so a preview means the same thing tomorrow."""

    name: str
    version: str

    @property
    def package(self) -> Path:
        """The vendored `.tgz` of this exact version (it may not exist for an unvendored pin)."""
        return VENDOR_DIR / f"{self.name}-{self.version}.tgz"

    @property
    def values_schema(self) -> Path:
        return VENDOR_DIR / f"{self.name}-{self.version}.values.schema.json"
