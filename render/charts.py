"""Chart pins: the charts every release installs, never a range, and their vendored packages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Upstream packages and values schemas with their provenance (SOURCES.md, vendor.yaml), so a
# clone renders and checks every chart without the steering repository beside it.
VENDOR_DIR: Final = Path(__file__).resolve().parent / "charts"


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """A pinned chart: never a range, so a preview means the same thing tomorrow."""

    name: str
    version: str
    repo: str

    @property
    def package(self) -> Path:
        """The vendored `.tgz` of this exact version (it may not exist for an unvendored pin)."""
        return VENDOR_DIR / f"{self.name}-{self.version}.tgz"

    @property
    def values_schema(self) -> Path:
        return VENDOR_DIR / f"{self.name}-{self.version}.values.schema.json"
