"""The one verifier of vendored upstream files: every byte `pulumi up` installs is pinned.

Chart packages and values schemas live in `render/charts/`; manifests (Gateway API CRDs, the
system-upgrade-controller release's sources) and CRD schemas in `render/upstream/`. Each folder
has one `vendor.yaml` (file -> sha256, source, checked, refs) and a `SOURCES.md` with the
provenance in prose. The program calls `verified()` before it declares a release or applies a
manifest, the offline plan before it renders one, and `tools/vendor.py verify` / the tests check
whole folders with `problems()`: one implementation, so what the tests checked is what `up`
installs.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import pulumi
import yaml

RENDER_DIR: Final = Path(__file__).resolve().parent
CHARTS_DIR: Final = RENDER_DIR / "charts"
UPSTREAM_DIR: Final = RENDER_DIR / "upstream"
VENDOR_DIRS: Final = (CHARTS_DIR, UPSTREAM_DIR)
MANIFEST: Final = "vendor.yaml"
# Files of each folder itself, not upstream data.
OWN_FILES: Final = frozenset({MANIFEST, "SOURCES.md"})


class PinError(pulumi.RunError, ValueError):
    """A vendored file is missing, unlisted or not the bytes its pin names.

    A `pulumi.RunError`, so `pulumi up` prints the message alone (no traceback), before the
    release or manifest that would have used the file is declared.
    """


@dataclass(frozen=True, slots=True)
class Pin:
    name: str
    sha256: str
    source: str
    checked: str
    refs: str


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_dict(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def raw_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """`vendor.yaml` of a folder as data: relative path -> entry."""
    # libyaml when present: the pure-Python loader took 50 ms per file, on every plan and `up`.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = _as_dict(yaml.load((directory / MANIFEST).read_text(), Loader=loader))  # a safe loader
    return {str(name): _as_dict(entry) for name, entry in _as_dict(doc.get("files")).items()}


@functools.lru_cache(maxsize=8)
def pins(directory: Path) -> dict[str, Pin]:
    return {
        name: Pin(
            name=name,
            sha256=str(entry.get("sha256", "")),
            source=str(entry.get("source", "")),
            checked=str(entry.get("checked", "")),
            refs=str(entry.get("refs", "")),
        )
        for name, entry in raw_manifest(directory).items()
    }


def _folder(path: Path) -> tuple[Path, str]:
    resolved = path.resolve()
    for directory in VENDOR_DIRS:
        if resolved.is_relative_to(directory):
            return directory, resolved.relative_to(directory).as_posix()
    raise PinError(f"{path}: not in a vendored folder ({', '.join(map(str, VENDOR_DIRS))})")


def _check(path: Path, actual: str) -> None:
    """`PinError` unless `actual` (the sha256 of bytes read from `path`) is the pinned one."""
    directory, name = _folder(path)
    pin = pins(directory).get(name)
    if pin is None:
        raise PinError(
            f"{name}: not listed in {directory.name}/{MANIFEST}; a new upstream file needs its "
            "sha256 and provenance: python -m tools.vendor refresh <path in refs/>"
        )
    if actual != pin.sha256:
        raise PinError(
            f"{directory.name}/{name}: sha256 {actual} but {directory.name}/{MANIFEST} pins "
            f"{pin.sha256} ({pin.source}); the file changed since it was checked: restore it "
            "(git checkout) or re-vendor it with python -m tools.vendor refresh"
        )


@functools.lru_cache(maxsize=64)
def _checked(path: str, size: int, mtime_ns: int) -> None:
    # Keyed by size and mtime too: a file changed after its first check is hashed again.
    _check(Path(path), sha256(Path(path)))


def _missing(path: Path) -> PinError:
    directory, name = _folder(path)
    return PinError(
        f"{directory.name}/{name} is not vendored; a new pin needs its file: "
        f"python -m tools.vendor refresh <path in refs/> (render/{directory.name}/SOURCES.md)"
    )


def verified(path: Path) -> Path:
    """`path` if its bytes are the ones pinned in its folder's vendor.yaml; else `PinError`.

    For a file something else reads later (Helm, the Kubernetes provider). A file the program
    parses itself goes through `verified_bytes`: the bytes checked are the bytes used."""
    if not path.is_file():
        raise _missing(path)
    stat = path.stat()
    _checked(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return path


def verified_bytes(path: Path) -> tuple[bytes, str]:
    """(bytes, sha256) of `path`, read once and checked against its pin; else `PinError`."""
    try:
        data = path.read_bytes()
    except OSError:
        raise _missing(path) from None
    digest = hashlib.sha256(data).hexdigest()
    _check(path, digest)
    return data, digest


def problems(directory: Path) -> list[str]:
    """Every problem with a vendored folder, empty when all is well."""
    found: list[str] = []
    listed = raw_manifest(directory)
    sources = (directory / "SOURCES.md").read_text()
    for name, entry in sorted(listed.items()):
        path = directory / name
        expected = str(entry.get("sha256", ""))
        if not path.is_file():
            found.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        actual = sha256(path)
        if actual != expected:
            found.append(f"{name}: sha256 {actual}, {MANIFEST} says {expected}")
        if expected not in sources:
            found.append(f"{name}: its sha256 is not in SOURCES.md (provenance missing)")
        for key in ("source", "checked", "refs"):
            if not entry.get(key):
                found.append(f"{name}: no `{key}` in {MANIFEST}")
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name not in OWN_FILES and name not in listed:
            found.append(f"{name}: not listed in {MANIFEST} (no provenance)")
    return found


# --- k3s downloads: sha256 per k3s release of the installer and the binaries ------------------

K3S_DOWNLOADS_FILE: Final = RENDER_DIR / "k3s_downloads.yaml"
K3S_REPO: Final = "k3s-io/k3s"
INSTALLER: Final = "install.sh"
# The release asset of each Hetzner architecture (config/data/hetzner_server_types.yaml `arch`).
K3S_BINARY: Final = {"x86": "k3s", "arm64": "k3s-arm64"}


@dataclass(frozen=True, slots=True)
class Download:
    """One file a server downloads, with its pinned sha256 (None: not pinned yet)."""

    what: str
    url: str
    sha256: str | None
    source: str | None


def _tag(version: str) -> str:
    # GitHub spells the '+' of k3s tags percent-encoded in download URLs.
    return version.replace("+", "%2B")


@functools.cache
def k3s_download_pins() -> dict[str, dict[str, dict[str, Any]]]:
    doc = _as_dict(yaml.safe_load(K3S_DOWNLOADS_FILE.read_text()))
    return {
        str(version): {str(name): _as_dict(entry) for name, entry in _as_dict(files).items()}
        for version, files in _as_dict(doc.get("versions")).items()
    }


def _download(version: str, name: str, url: str) -> Download:
    entry = k3s_download_pins().get(version, {}).get(name, {})
    digest = entry.get("sha256")
    source = entry.get("source")
    return Download(
        what=f"k3s {version} {name}",
        url=url,
        sha256=str(digest) if digest else None,
        source=str(source) if source else None,
    )


def k3s_installer(version: str) -> Download:
    """install.sh at the release's tag: the installer that shipped with this release."""
    return _download(
        version,
        INSTALLER,
        f"https://raw.githubusercontent.com/{K3S_REPO}/{_tag(version)}/{INSTALLER}",
    )


def k3s_binary(version: str, arch: str) -> Download:
    name = K3S_BINARY[arch]
    return _download(
        version, name, f"https://github.com/{K3S_REPO}/releases/download/{_tag(version)}/{name}"
    )


def unpinned(downloads: list[Download]) -> list[str]:
    """A warning per download without a sha256 (the plan prints them; `--strict` refuses)."""
    return [
        f"{d.what} ({d.url}) has no pinned sha256 in render/{K3S_DOWNLOADS_FILE.name}: the "
        + (
            "server runs it unchecked"
            if d.what.endswith(INSTALLER)
            else "server checks it only against the release's own checksum file"
        )
        + "; fill it with `python -m tools.resolve_pins k3s <version>`"
        for d in downloads
        if d.sha256 is None
    ]


# --- images: every image in the rendered objects pinned by digest -----------------------------

# Tag -> digest per image reference, each with the URL it was resolved from and the date
# (written by `python -m tools.resolve_pins image REF...`). Rendering reads it: every image whose
# `<registry>/<repository>:<tag>` has an entry is rendered as `...:<tag>@sha256:<digest>`.
IMAGE_DIGESTS_FILE: Final = RENDER_DIR / "image_digests.yaml"
DIGEST_MARK: Final = "@sha256:"
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
# A reference without a registry host is pulled from Docker Hub (the Docker reference grammar:
# the first component is a host only if it has a dot or a port, or is `localhost`).
DOCKER_HUB: Final = "docker.io"


@dataclass(frozen=True, slots=True)
class ImageDigest:
    digest: str  # sha256:<64 hex>
    source: str
    checked: str


def _tagged(ref: str) -> bool:
    name, _, tag = ref.rpartition(":")
    return bool(name) and bool(tag) and "/" not in tag


def canonical(ref: str) -> str:
    """`registry/repository:tag` as a runtime resolves it (Docker Hub and its `library/` made
    explicit), so `rancher/kubectl:v1.30.3` and `docker.io/rancher/kubectl:v1.30.3` are one key.
    A reference that names no tag is returned as it is (it has no entry to find)."""
    if not _tagged(ref.partition("@")[0]):
        return ref
    name, _, tag = ref.partition("@")[0].rpartition(":")
    first, _, rest = name.partition("/")
    if not (rest and ("." in first or ":" in first or first == "localhost")):
        first, rest = DOCKER_HUB, name if rest else f"library/{name}"
    return f"{first}/{rest}:{tag}"


def load_image_digests(path: Path) -> dict[str, ImageDigest]:
    """The digest table of `path` by canonical reference; `PinError` listing every bad entry."""
    where = f"render/{path.name}"
    try:
        doc: object = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PinError(f"{where}: cannot be read as YAML ({err})") from None
    table = cast(dict[str, object], doc).get("images") if isinstance(doc, dict) else doc
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise PinError(f"{where}: `images` must map image references to entries, not {table!r}")
    found: dict[str, ImageDigest] = {}
    bad: list[str] = []
    for ref, value in cast(dict[object, object], table).items():
        entry = _as_dict(value)
        key = f"images.{ref!r}"
        if not isinstance(ref, str) or "@" in ref or not _tagged(ref):
            bad.append(
                f"{key}: a reference with its tag and no digest, e.g. quay.io/org/app:v1.2.3"
            )
            continue
        digest, source, checked = entry.get("digest"), entry.get("source"), entry.get("checked")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            bad.append(f"{key}.digest: {digest!r}; allowed: sha256: and 64 lower-case hex digits")
        if not isinstance(source, str) or not source.strip():
            bad.append(f"{key}.source: {source!r}; allowed: the URL the digest was read from")
        if not isinstance(checked, str | datetime.date) or not str(checked).strip():
            bad.append(f"{key}.checked: {checked!r}; allowed: the date it was read (YYYY-MM-DD)")
        if canonical(ref) in found:
            bad.append(f"{key}: the same image as another entry ({canonical(ref)})")
        found[canonical(ref)] = ImageDigest(str(digest), str(source), str(checked))
    if bad:
        raise PinError(
            f"{where} has {len(bad)} invalid entr{'y' if len(bad) == 1 else 'ies'} (fill it with "
            "`python -m tools.resolve_pins image REF...`, never by hand):\n"
            + "\n".join(f"  - {line}" for line in bad)
        )
    return found


@functools.lru_cache(maxsize=4)
def _image_digests(path: Path, size: int, mtime_ns: int) -> dict[str, ImageDigest]:
    # Keyed by size and mtime too: a file rewritten (by resolve_pins) is read again.
    del size, mtime_ns
    return load_image_digests(path)


def image_digests() -> dict[str, ImageDigest]:
    try:
        stat = IMAGE_DIGESTS_FILE.stat()
    except OSError:
        return load_image_digests(IMAGE_DIGESTS_FILE)  # the error names the file
    return _image_digests(IMAGE_DIGESTS_FILE, stat.st_size, stat.st_mtime_ns)


def digest_of(ref: str) -> str | None:
    """The pinned digest of an image reference (registry/repository:tag), None without one."""
    entry = image_digests().get(canonical(ref))
    return entry.digest if entry is not None else None


def pinned(ref: str) -> str:
    """`ref` as rendered: `<ref>@sha256:...` when the data has its digest (the tag stays for
    people; runtimes pull by the digest). A reference that already has a digest is kept."""
    if DIGEST_MARK in ref:
        return ref
    digest = digest_of(ref)
    return f"{ref}@{digest}" if digest else ref


def pinned_tag(ref: str) -> str:
    """The tag of `ref` with its digest when the data has one (`<tag>@sha256:...`): for charts
    that compose `<registry>/<repository>:<tag>` themselves and take no digest value."""
    tag = ref.rpartition(":")[2]
    digest = digest_of(ref)
    return f"{tag}@{digest}" if digest else tag


def unpinned_images(images_by_release: dict[str, list[str]]) -> list[str]:
    """A warning per rendered image reference that carries no digest (release -> images)."""
    return [
        f"image {image} ({release}) is not pinned by digest: a tag can be moved to other bytes; "
        f"fill render/{IMAGE_DIGESTS_FILE.name}: `python -m tools.resolve_pins image {image}`"
        for release, images in images_by_release.items()
        for image in images
        if DIGEST_MARK not in image
    ]
