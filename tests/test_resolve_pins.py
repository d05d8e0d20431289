"""The pin resolver's logic on recorded responses (GitHub releases, registry v2 token dance)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tools import resolve_pins
from tools.resolve_pins import Answer, ResolveError, k3s_pins, parse_image, resolve_digest

AMD = "a" * 64
ARM = "b" * 64
INSTALL_SH = b"#!/bin/sh\n# k3s installer at the tag\n"
# The shape of a k3s release's sha256sum-<arch>.txt: "<sha256>  <asset>" per line.
RELEASE = {
    "https://github.com/k3s-io/k3s/releases/download/v1.35.6%2Bk3s1/sha256sum-amd64.txt": (
        f"{'c' * 64}  k3s-airgap-images-amd64.tar.zst\n{AMD}  k3s\n".encode()
    ),
    "https://github.com/k3s-io/k3s/releases/download/v1.35.6%2Bk3s1/sha256sum-arm64.txt": (
        f"{ARM}  k3s-arm64\n{'d' * 64}  k3s-airgap-images-arm64.tar.zst\n".encode()
    ),
    "https://raw.githubusercontent.com/k3s-io/k3s/v1.35.6%2Bk3s1/install.sh": INSTALL_SH,
}


def github(method: str, url: str, headers: Mapping[str, str]) -> Answer:
    body = RELEASE.get(url)
    return Answer(200, {}, body) if body is not None else Answer(404, {}, b"")


def test_k3s_pins_come_from_the_release_checksums_and_the_tags_installer() -> None:
    pins = k3s_pins("v1.35.6+k3s1", github, "2026-12-04")
    assert pins["k3s"]["sha256"] == AMD
    assert pins["k3s-arm64"]["sha256"] == ARM
    assert pins["install.sh"]["sha256"] == hashlib.sha256(INSTALL_SH).hexdigest()
    assert pins["k3s"]["source"].endswith("/v1.35.6%2Bk3s1/sha256sum-amd64.txt")
    assert {p["checked"] for p in pins.values()} == {"2026-12-04"}


def test_a_missing_release_is_an_error_naming_the_url() -> None:
    with pytest.raises(ResolveError, match=r"GET https://github.com/.*v1\.99\.0.*: HTTP 404"):
        k3s_pins("v1.99.0+k3s1", github, "2026-12-04")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("rancher/system-upgrade-controller:v0.20.1", ("registry-1.docker.io", "rancher/system-upgrade-controller", "v0.20.1")),
        ("busybox:1.37", ("registry-1.docker.io", "library/busybox", "1.37")),
        ("ghcr.io/loft-sh/vcluster-oss:0.20.0", ("ghcr.io", "loft-sh/vcluster-oss", "0.20.0")),
        ("quay.io/jetstack/cert-manager-controller:v1.21.1", ("quay.io", "jetstack/cert-manager-controller", "v1.21.1")),
    ],
)  # fmt: skip
def test_image_references_name_their_registry(ref: str, expected: tuple[str, str, str]) -> None:
    assert parse_image(ref) == expected


DIGEST = "sha256:" + "e" * 64


class Registry:
    """Recorded answers of a registry that wants an anonymous bearer token (ghcr.io's flow)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str]) -> Answer:
        self.calls.append((method, url, dict(headers)))
        if url.startswith("https://ghcr.io/token?"):
            return Answer(200, {}, b'{"token":"anon-token"}')
        if headers.get("Authorization") != "Bearer anon-token":
            challenge = (
                'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
                'scope="repository:loft-sh/vcluster-oss:pull"'
            )
            return Answer(401, {"www-authenticate": challenge}, b"")
        return Answer(200, {"docker-content-digest": DIGEST}, b"")


def test_a_tag_resolves_to_its_digest_through_the_token_dance() -> None:
    registry = Registry()
    digest, url = resolve_digest("ghcr.io/loft-sh/vcluster-oss:0.20.0", registry)
    assert digest == DIGEST
    assert url == "https://ghcr.io/v2/loft-sh/vcluster-oss/manifests/0.20.0"
    token_url = registry.calls[1][1]
    assert token_url == (
        "https://ghcr.io/token?service=ghcr.io&scope=repository:loft-sh/vcluster-oss:pull"
    )
    # The index digest of a multi-architecture image, not one platform's manifest.
    assert "application/vnd.oci.image.index.v1+json" in registry.calls[-1][2]["Accept"]


def test_a_registry_without_a_digest_header_is_an_error() -> None:
    def bare(method: str, url: str, headers: Mapping[str, str]) -> Answer:
        return Answer(200, {}, b"")

    with pytest.raises(ResolveError, match="no Docker-Content-Digest"):
        resolve_digest("quay.io/jetstack/cert-manager-controller:v1.21.1", bare)


def test_the_command_writes_pins_with_source_and_date_and_keeps_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "k3s_downloads.yaml"
    data.write_text("# header kept\nversions:\n  v1.34.9+k3s1: {k3s: {sha256: null}}\n")
    monkeypatch.setattr(resolve_pins, "K3S_DOWNLOADS_FILE", data)
    assert resolve_pins.main(["k3s", "v1.35.6+k3s1"], fetch=github) == 0
    text = data.read_text()
    assert text.startswith("# header kept\n")
    doc = yaml.safe_load(text)
    assert doc["versions"]["v1.35.6+k3s1"]["k3s"]["sha256"] == AMD
    assert doc["versions"]["v1.35.6+k3s1"]["k3s"]["source"].startswith("https://github.com/")
    assert "v1.34.9+k3s1" in doc["versions"]
    images = tmp_path / "image_digests.yaml"
    monkeypatch.setattr(resolve_pins, "IMAGE_DIGESTS_FILE", images)
    assert resolve_pins.main(["image", "ghcr.io/loft-sh/vcluster-oss:0.20.0"], Registry()) == 0
    entry = yaml.safe_load(images.read_text())["images"]["ghcr.io/loft-sh/vcluster-oss:0.20.0"]
    assert entry["digest"] == DIGEST
    assert entry["source"] == "https://ghcr.io/v2/loft-sh/vcluster-oss/manifests/0.20.0"


def test_what_the_resolver_writes_is_what_rendering_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The committed file (header and empty table) gains an entry that the renderer then uses.
    from checks.preflight import parse
    from render import pins
    from render.vcluster import vcluster_values
    from tools.mockrun import stack_config

    images = tmp_path / "image_digests.yaml"
    images.write_text(pins.IMAGE_DIGESTS_FILE.read_text())
    monkeypatch.setattr(resolve_pins, "IMAGE_DIGESTS_FILE", images)
    monkeypatch.setattr(pins, "IMAGE_DIGESTS_FILE", images)
    assert resolve_pins.main(["image", "ghcr.io/loft-sh/vcluster-oss:0.20.0"], Registry()) == 0
    assert images.read_text().startswith(pins.IMAGE_DIGESTS_FILE.read_text().split("images:")[0])
    cfg = parse(stack_config("primary"), "primary")
    values = vcluster_values(cfg, cfg.vclusters.spec("dmz"))
    assert values["controlPlane"]["statefulSet"]["image"]["tag"] == f"0.20.0@{DIGEST}"
