"""Upstream support matrices (Kubernetes, Cilium, cert-manager, Gateway API) as typed data.

Read from `data/support_matrix.yaml`, where every fact carries its source; `checks/versions.py`
judges a stack's pins against it.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

DATA_FILE: Final = Path(__file__).parent / "data" / "support_matrix.yaml"


@dataclass(frozen=True, slots=True)
class Line:
    """One release line of a component and the Kubernetes minors it supports."""

    kubernetes: tuple[str, ...]
    source: str
    gateway_api: tuple[str, ...] = ()
    # The chart version vendored for this line (Cilium): where an upgrade to the line lands.
    chart: str = ""

    @property
    def kubernetes_range(self) -> str:
        return f"{self.kubernetes[0]}-{self.kubernetes[-1]}"


@dataclass(frozen=True, slots=True)
class Matrix:
    checked: datetime.date
    kubernetes_eol: dict[str, datetime.date]
    cilium: dict[str, Line]
    cert_manager: dict[str, Line]
    hcloud_ccm: dict[str, Line]
    hcloud_csi: dict[str, Line]
    gateway_api_min: dict[str, str]
    # Kubernetes minor -> the newest k3s release of it known here (with its source).
    k3s: dict[str, K3sRelease]


@dataclass(frozen=True, slots=True)
class K3sRelease:
    version: str
    source: str


def minor(version: str) -> str | None:
    """`1.33` of `v1.33.13+k3s2`, `1.18` of `1.18.12`, `1.21` of `v1.21.1`; None if unparsable."""
    found = re.match(r"v?([0-9]+)\.([0-9]+)(\.|$)", version)
    return f"{found[1]}.{found[2]}" if found else None


def minor_key(value: str) -> tuple[int, int]:
    major, _, rest = value.partition(".")
    return int(major), int(rest)


def _date(value: object) -> datetime.date:
    if isinstance(value, datetime.date):
        return value
    return datetime.date.fromisoformat(str(value))


def _lines(raw: dict[str, dict[str, Any]]) -> dict[str, Line]:
    return {
        name: Line(
            kubernetes=tuple(sorted((str(v) for v in spec["kubernetes"]), key=minor_key)),
            source=str(spec["source"]),
            gateway_api=tuple(str(v) for v in spec.get("gateway_api", ())),
            chart=str(spec.get("chart", "")),
        )
        for name, spec in raw.items()
    }


def load(path: Path = DATA_FILE) -> Matrix:
    raw = cast(dict[str, Any], yaml.safe_load(path.read_text()))
    minors = cast(dict[str, dict[str, Any]], raw["kubernetes"]["minors"])
    gateway = cast(dict[str, dict[str, Any]], raw["gateway_api"]["versions"])
    return Matrix(
        checked=_date(raw["checked"]),
        kubernetes_eol={name: _date(spec["end_of_life"]) for name, spec in minors.items()},
        cilium=_lines(cast(dict[str, dict[str, Any]], raw["cilium"]["lines"])),
        cert_manager=_lines(cast(dict[str, dict[str, Any]], raw["cert_manager"]["lines"])),
        hcloud_ccm=_lines(cast(dict[str, dict[str, Any]], raw["hcloud_ccm"]["lines"])),
        hcloud_csi=_lines(cast(dict[str, dict[str, Any]], raw["hcloud_csi"]["lines"])),
        gateway_api_min={name: str(spec["kubernetes_min"]) for name, spec in gateway.items()},
        k3s={
            name: K3sRelease(str(spec["version"]), str(spec["source"]))
            for name, spec in cast(dict[str, dict[str, Any]], raw["k3s"]["releases"]).items()
        },
    )


MATRIX: Final = load()
