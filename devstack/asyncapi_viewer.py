"""Installing the AsyncAPI viewer the ingester's `/asyncapi` page runs (`shared.asyncapi_viewer`).

The pinned npm package is downloaded from the npm registry (`NPM_CONFIG_REGISTRY` names a
mirror), checked against the integrity the registry records for it, and its standalone script,
styles and licence are unpacked into a folder; a marker file records which package is there, so
installing again is free. Nothing is fetched when the page is served.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import httpx

from shared import asyncapi_viewer as viewer

DEFAULT_REGISTRY = "https://registry.npmjs.org"
TIMEOUT_S = 120.0
MARKER = ".installed"


class ViewerInstallError(RuntimeError):
    """The viewer could not be downloaded, or is not what the pin says."""


def registry() -> str:
    """The npm registry to download from: npm's own variable if set, else the public one."""
    lower = os.environ.get("npm_config_registry")  # noqa: SIM112 (npm's own spelling)
    configured = os.environ.get("NPM_CONFIG_REGISTRY") or lower
    return (configured or DEFAULT_REGISTRY).rstrip("/")


def tarball_url(base: str) -> str:
    scope_and_name = viewer.PACKAGE
    name = scope_and_name.rsplit("/", 1)[-1]
    return f"{base}/{scope_and_name}/-/{name}-{viewer.VERSION}.tgz"


def pin() -> str:
    return f"{viewer.PACKAGE}@{viewer.VERSION} {viewer.INTEGRITY}\n"


def is_current(folder: Path) -> bool:
    marker = folder / MARKER
    return viewer.is_installed(folder) and marker.is_file() and marker.read_text() == pin()


def check_integrity(tarball: bytes, integrity: str | None = None) -> None:
    """Raise unless `tarball` matches `integrity` (npm's `sha512-<base64>`; the pin's)."""
    integrity = integrity or viewer.INTEGRITY
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ViewerInstallError(f"unsupported integrity {algorithm!r}")
    found = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if found != expected:
        raise ViewerInstallError(
            f"{viewer.PACKAGE}@{viewer.VERSION}: the download has sha512-{found}, "
            f"the pin says {integrity}"
        )


def unpack(tarball: bytes, folder: Path) -> None:
    """Write the pinned members of `tarball` into `folder` (each replaced whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member_name, file_name in viewer.FILES.items():
            try:
                member = archive.getmember(member_name)
            except KeyError:
                raise ViewerInstallError(f"the package has no {member_name}") from None
            source = archive.extractfile(member) if member.isfile() else None
            if source is None:
                raise ViewerInstallError(f"{member_name} is not a file in the package")
            partial = folder / f".{file_name}.partial"
            partial.write_bytes(source.read())
            partial.replace(folder / file_name)


def download(url: str) -> bytes:
    try:
        response = httpx.get(url, timeout=TIMEOUT_S, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ViewerInstallError(f"downloading {url} failed: {exc}") from exc
    return response.content


def install_viewer(
    folder: Path,
    progress: Callable[[str], None] = lambda message: None,
    fetch: Callable[[str], bytes] = download,
) -> bool:
    """Install the pinned viewer into `folder`; False when it is there already."""
    if is_current(folder):
        return False
    (folder / MARKER).unlink(missing_ok=True)
    progress(f"installing the AsyncAPI viewer ({viewer.PACKAGE}@{viewer.VERSION})")
    tarball = fetch(tarball_url(registry()))
    check_integrity(tarball)
    unpack(tarball, folder)
    (folder / MARKER).write_text(pin())
    return True
