"""Pinned versions that each upstream supports together (data: config/data/support_matrix.yaml).

An unsupported combination is refused, naming both versions and the supported range. A
Kubernetes minor past its end of upstream support is not a combination problem: it is reported
with its date (`notices`), because no minor both maintained upstream today and supported by the
pinned Cilium line may exist, and the report says so when that is the case.
"""

from __future__ import annotations

import datetime

from config.errors import Problem
from config.models import StackConfig
from config.support import MATRIX, Line, Matrix, minor, minor_key
from render.charts import VENDOR_DIR, Chart
from render.hcloud import CCM_CHART, CSI_CHART

K3S_KEY = "sovereign:controlPlane.k3sVersion"
CILIUM_KEY = "sovereign:cilium.version"
CERT_MANAGER_KEY = "sovereign:certManager.version"
GATEWAY_KEY = "sovereign:cilium.gatewayApi.crdsVersion"
# The Hetzner charts are pinned in code, not config: a bump moves render/hcloud.py.
HCLOUD_KEY = "render/hcloud.py"


def _line(
    lines: dict[str, Line], version: str, key: str, project: str
) -> tuple[Line | None, list[Problem]]:
    line = lines.get(minor(version) or "")
    if line is None:
        known = ", ".join(sorted(lines, key=minor_key))
        return None, [
            Problem(
                key,
                repr(version),
                f"no {project} support data for this line (known lines: {known}); add the "
                f"line's Kubernetes support with its source to config/data/support_matrix.yaml",
            )
        ]
    return line, []


def _vendored(chart: Chart, key: str) -> list[Problem]:
    """`up` installs only vendored packages: a pin with none is refused before any resource."""
    if chart.package.is_file():
        return []
    known = sorted(p.name.removesuffix(".tgz") for p in VENDOR_DIR.glob(f"{chart.name}-*.tgz"))
    return [
        Problem(
            key,
            repr(chart.version),
            f"a version whose chart package is vendored in render/charts/ ({', '.join(known)}); "
            "a new pin needs its package and values schema first: python -m tools.vendor "
            f"refresh charts/{chart.package.name} (render/charts/SOURCES.md)",
        )
    ]


def _pair(k3s: str, kube: str, project: str, version: str, line: Line, key: str) -> list[Problem]:
    if kube in line.kubernetes:
        return []
    return [
        Problem(
            K3S_KEY,
            repr(k3s),
            f"k3s {k3s} is Kubernetes {kube}, which {project} {version} does not support "
            f"({project} {minor(version)} supports Kubernetes {line.kubernetes_range}; "
            f"source: {line.source}); pin a k3s release of Kubernetes "
            f"{line.kubernetes_range} or a {project} line ({key}) that supports {kube}",
        )
    ]


def problems(cfg: StackConfig, matrix: Matrix = MATRIX) -> list[Problem]:
    k3s = cfg.control_plane.k3s_version
    kube = minor(k3s) or ""
    found: list[Problem] = []
    if kube not in matrix.kubernetes_eol:
        known = ", ".join(sorted(matrix.kubernetes_eol, key=minor_key))
        found.append(
            Problem(
                K3S_KEY,
                repr(k3s),
                f"Kubernetes {kube} has no support data (known minors: {known}); add it with "
                "its end of life and source to config/data/support_matrix.yaml",
            )
        )
    found += _vendored(Chart(name="cilium", version=cfg.cilium.version), CILIUM_KEY)
    found += _vendored(
        Chart(name="cert-manager", version=cfg.cert_manager.version), CERT_MANAGER_KEY
    )
    cilium, missing = _line(matrix.cilium, cfg.cilium.version, CILIUM_KEY, "Cilium")
    found += missing
    if cilium is not None:
        found += _pair(k3s, kube, "Cilium", cfg.cilium.version, cilium, CILIUM_KEY)
    cert_manager, missing = _line(
        matrix.cert_manager, cfg.cert_manager.version, CERT_MANAGER_KEY, "cert-manager"
    )
    found += missing
    if cert_manager is not None:
        found += _pair(
            k3s, kube, "cert-manager", cfg.cert_manager.version, cert_manager, CERT_MANAGER_KEY
        )
    found += _hetzner_problems(cfg, k3s, kube, matrix)
    gateway = cfg.cilium.gateway_api
    if gateway.enabled and cilium is not None:
        found += _gateway_problems(
            k3s, kube, cfg.cilium.gateway_api_crds, cfg.cilium.version, cilium, matrix
        )
    return found


def _hetzner_problems(cfg: StackConfig, k3s: str, kube: str, matrix: Matrix) -> list[Problem]:
    """The Hetzner CCM (where it runs) and CSI driver the program pins, against k3s's minor."""
    found: list[Problem] = []
    pinned = [("Hetzner CSI driver", CSI_CHART.version, matrix.hcloud_csi)]
    if cfg.cloud_controller == "hetzner":
        pinned.insert(0, ("Hetzner CCM", CCM_CHART.version, matrix.hcloud_ccm))
    for project, version, lines in pinned:
        line, missing = _line(lines, version, HCLOUD_KEY, project)
        found += missing
        if line is not None:
            found += _pair(k3s, kube, project, version, line, HCLOUD_KEY)
    return found


def _gateway_problems(
    k3s: str, kube: str, crds: str, cilium_version: str, cilium: Line, matrix: Matrix
) -> list[Problem]:
    found: list[Problem] = []
    if crds not in cilium.gateway_api:
        found.append(
            Problem(
                GATEWAY_KEY,
                repr(crds),
                f"Cilium {cilium_version} supports Gateway API {', '.join(cilium.gateway_api)}, "
                f"not {crds}; pin one of those (source: {cilium.source})",
            )
        )
    least = matrix.gateway_api_min.get(crds)
    if least is not None and kube and minor_key(kube) < minor_key(least):
        found.append(
            Problem(
                K3S_KEY,
                repr(k3s),
                f"Gateway API {crds} needs Kubernetes {least} or later; k3s {k3s} is {kube}",
            )
        )
    return found


def notices(cfg: StackConfig, today: datetime.date, matrix: Matrix = MATRIX) -> list[str]:
    """Facts a deployer must know but that no pin in reach can fix: end of upstream support."""
    k3s = cfg.control_plane.k3s_version
    kube = minor(k3s) or ""
    end = matrix.kubernetes_eol.get(kube)
    if end is None or end >= today:
        return []
    cilium = matrix.cilium.get(minor(cfg.cilium.version) or "")
    maintained = sorted(
        (name for name, eol in matrix.kubernetes_eol.items() if eol >= today), key=minor_key
    )
    text = (
        f"Kubernetes {kube} (k3s {k3s}) reached the end of upstream support on {end}: it gets "
        "no more upstream security patches."
    )
    if cilium is not None:
        both = [name for name in maintained if name in cilium.kubernetes]
        if both:
            text += f" Cilium {cfg.cilium.version} also supports maintained {', '.join(both)}."
        else:
            text += (
                f" No minor maintained upstream today ({', '.join(maintained) or 'none'}) is "
                f"supported by Cilium {cfg.cilium.version} (Kubernetes "
                f"{cilium.kubernetes_range}); moving on needs a newer Cilium line."
            )
    return [text]
