"""Hetzner server types a stack may order, read from `data/hetzner_server_types.yaml`.

The catalogue is the published offer on its `checked` date (see the data file for sources): it
refuses at preview what Hetzner can no longer sell, so the first `pulumi up` does not fail on
`Server Type "cpx31" is unavailable in "fsn1" and can no longer be ordered`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

DATA_FILE: Final = Path(__file__).parent / "data" / "hetzner_server_types.yaml"


@dataclass(frozen=True, slots=True)
class ServerType:
    name: str
    vcpu: int
    memory_gb: int
    disk_gb: int
    arch: str
    cpu: str
    locations: tuple[str, ...]
    successor: str | None = None
    unorderable_from: datetime.date | None = None

    @property
    def capacity(self) -> str:
        return f"{self.vcpu} vCPU, {self.memory_gb} GB, {self.disk_gb} GB disk"


@dataclass(frozen=True, slots=True)
class Catalogue:
    checked: datetime.date
    types: dict[str, ServerType]

    def sold_in(self, location: str) -> list[str]:
        return [name for name, t in self.types.items() if location in t.locations]

    def current(self) -> list[str]:
        """Types not deprecated anywhere: what the error for an unknown name offers."""
        return [name for name, t in self.types.items() if t.successor is None]

    def unknown(self, name: str) -> str | None:
        """Why `name` is no server type at all, or None."""
        if name in self.types:
            return None
        return (
            f"not a Hetzner server type on sale (catalogue of {self.checked}); "
            f"current types: {', '.join(self.current())}"
        )

    def refusal(self, name: str, location: str) -> str | None:
        """Why `name` cannot be ordered in `location`, naming what to order instead; or None."""
        known = self.types.get(name)
        if known is None:
            return self.unknown(name)
        if location in known.locations:
            return None
        if known.successor is not None:
            successor = self.types[known.successor]
            where = (
                f"; it is still sold only in {', '.join(known.locations)}"
                if known.locations
                else ""
            )
            return (
                f"deprecated by Hetzner (changelog 2025-10-16) and no longer orderable in "
                f"{location} since {known.unorderable_from}{where}. Its successor is "
                f"{successor.name} ({successor.capacity}; {name} had {known.capacity})"
            )
        return (
            f"not sold in {location} (sold in {', '.join(known.locations)}); types sold in "
            f"{location}: {', '.join(self.sold_in(location)) or 'none'}"
        )


def _date(value: object) -> datetime.date:
    if isinstance(value, datetime.date):
        return value
    return datetime.date.fromisoformat(str(value))


def load(path: Path = DATA_FILE) -> Catalogue:
    raw = cast(dict[str, Any], yaml.safe_load(path.read_text()))
    types: dict[str, ServerType] = {}
    for name, spec in cast(dict[str, dict[str, Any]], raw["types"]).items():
        until = spec.get("unorderable_from")
        types[name] = ServerType(
            name=name,
            vcpu=int(spec["vcpu"]),
            memory_gb=int(spec["memory_gb"]),
            disk_gb=int(spec["disk_gb"]),
            arch=str(spec["arch"]),
            cpu=str(spec["cpu"]),
            locations=tuple(str(loc) for loc in spec["locations"]),
            successor=spec.get("successor"),
            unorderable_from=None if until is None else _date(until),
        )
    return Catalogue(checked=_date(raw["checked"]), types=types)


CATALOGUE: Final = load()
