"""Fill the pins from upstream over HTTP, where those hosts are reachable (not from CI's sandbox).

    python -m tools.resolve_pins k3s v1.35.6+k3s1       install.sh at the tag + release checksums
    python -m tools.resolve_pins image REF [REF ...]    tag -> digest through the registry v2 API

`k3s` writes render/k3s_downloads.yaml: the binaries' sha256 from the release's
sha256sum-<arch>.txt, the installer's from the bytes of install.sh at the release tag. `image`
writes render/image_digests.yaml. Every value is written with the URL it came from and today's
date. The HTTP logic takes its transport as a parameter and is tested on recorded responses
(tests/test_resolve_pins.py).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import yaml

from render.pins import (
    IMAGE_DIGESTS_FILE,
    INSTALLER,
    K3S_BINARY,
    K3S_DOWNLOADS_FILE,
    K3S_REPO,
    k3s_installer,
)

# Docker Hub's registry host, for references without one (docker.io/library/...).
DOCKER_HUB: Final = "registry-1.docker.io"
# Accept headers so the registry answers with the digest the runtime pulls (an index when the
# image is multi-architecture). source: distribution-spec v1.1 "Pulling manifests", OCI
# image-spec media-types.md (checked 2026-12-04).
MANIFEST_TYPES: Final = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


Fetch = Callable[[str, str, Mapping[str, str]], Answer]  # (method, url, headers) -> answer


class ResolveError(RuntimeError):
    """An upstream answer the resolver cannot use; the message names the URL."""


def http_fetch(method: str, url: str, headers: Mapping[str, str]) -> Answer:
    request = urllib.request.Request(url, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            got = {k.lower(): v for k, v in response.headers.items()}
            return Answer(int(response.status), got, cast(bytes, response.read()))
    except urllib.error.HTTPError as err:
        got = {k.lower(): v for k, v in err.headers.items()}
        return Answer(int(err.code), got, b"")


def _get(fetch: Fetch, url: str) -> bytes:
    answer = fetch("GET", url, {})
    if answer.status != 200:
        raise ResolveError(f"GET {url}: HTTP {answer.status}")
    return answer.body


def k3s_pins(version: str, fetch: Fetch, today: str) -> dict[str, dict[str, str]]:
    """The install.sh and binary pins of one k3s release."""
    tag = version.replace("+", "%2B")
    base = f"https://github.com/{K3S_REPO}/releases/download/{tag}"
    pins: dict[str, dict[str, str]] = {}
    for arch, name in sorted(K3S_BINARY.items()):
        listing = f"{base}/sha256sum-{'amd64' if arch == 'x86' else arch}.txt"
        sums: dict[str, str] = {}
        for line in _get(fetch, listing).decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and _SHA256.fullmatch(parts[0]):
                sums[parts[1].lstrip("*")] = parts[0]
        if name not in sums:
            raise ResolveError(f"{listing} lists no {name}")
        pins[name] = {"sha256": sums[name], "source": listing, "checked": today}
    url = k3s_installer(version).url
    pins[INSTALLER] = {
        "sha256": hashlib.sha256(_get(fetch, url)).hexdigest(),
        "source": f"{url} (sha256 of the bytes served)",
        "checked": today,
    }
    return pins


def parse_image(ref: str) -> tuple[str, str, str]:
    """(registry host, repository, tag) of an image reference."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        raise ResolveError(f"{ref}: needs an explicit tag (registry/repository:tag)")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name if rest else f"library/{name}"
    if registry == "docker.io":
        registry = DOCKER_HUB
    return registry, repository, tag


def _bearer(challenge: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


def resolve_digest(ref: str, fetch: Fetch) -> tuple[str, str]:
    """(digest, manifest URL) of a tag, anonymously (the token dance when the registry asks)."""
    registry, repository, tag = parse_image(ref)
    url = f"https://{registry}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    answer = fetch("HEAD", url, headers)
    if answer.status == 401:
        challenge = answer.headers.get("www-authenticate", "")
        params = _bearer(challenge)
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise ResolveError(f"HEAD {url}: HTTP 401 without a bearer challenge")
        query = "&".join(f"{k}={params[k]}" for k in ("service", "scope") if k in params)
        body = json.loads(_get(fetch, f"{params['realm']}?{query}"))
        token = str(body.get("token") or body.get("access_token") or "")
        answer = fetch("HEAD", url, {**headers, "Authorization": f"Bearer {token}"})
    if answer.status != 200:
        raise ResolveError(f"HEAD {url}: HTTP {answer.status}")
    digest = answer.headers.get("docker-content-digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ResolveError(f"HEAD {url}: no Docker-Content-Digest (got {digest!r})")
    return digest, url


def _header(path: Path) -> str:
    if not path.exists():
        return ""
    return "".join(line for line in path.read_text().splitlines(keepends=True) if line[:1] == "#")


def _write(path: Path, key: str, entries: Mapping[str, Any]) -> None:
    doc = cast(dict[str, Any], yaml.safe_load(path.read_text()) if path.exists() else {}) or {}
    table = cast(dict[str, Any], doc.get(key) or {})
    table.update(entries)
    doc[key] = table
    path.write_text(_header(path) + yaml.safe_dump(doc, sort_keys=True, width=100))


def main(argv: Sequence[str] | None = None, fetch: Fetch = http_fetch) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.resolve_pins")
    sub = parser.add_subparsers(dest="kind", required=True)
    sub.add_parser("k3s", help="pin a k3s release's install.sh and binaries").add_argument(
        "version"
    )
    sub.add_parser("image", help="pin image tags by digest").add_argument("refs", nargs="+")
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    try:
        if args.kind == "k3s":
            _write(
                K3S_DOWNLOADS_FILE, "versions", {args.version: k3s_pins(args.version, fetch, today)}
            )
        else:
            entries: dict[str, Any] = {}
            for ref in args.refs:
                digest, url = resolve_digest(ref, fetch)
                entries[ref] = {"digest": digest, "source": url, "checked": today}
            _write(IMAGE_DIGESTS_FILE, "images", entries)
    except (ResolveError, OSError, ValueError) as err:
        print(f"resolve_pins: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
