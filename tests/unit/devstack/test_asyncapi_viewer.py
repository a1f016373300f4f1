"""Installing the AsyncAPI page's viewer: the pinned package's files, checked against its
integrity, once; a download that does not match the pin is refused and installs nothing."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from devstack.asyncapi_viewer import (
    MARKER,
    ViewerInstallError,
    check_integrity,
    install_viewer,
    registry,
    tarball_url,
)
from shared import asyncapi_viewer as viewer

MEMBERS = {
    "package/browser/standalone/index.js": b"window.AsyncApiStandalone = {};",
    "package/styles/default.min.css": b".a{}",
    "package/LICENSE": b"Apache License 2.0",
    "package/README.md": b"not wanted",
}


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_the_pin_is_the_registrys_tarball_of_the_measured_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NPM_CONFIG_REGISTRY", raising=False)
    monkeypatch.delenv("npm_config_registry", raising=False)
    assert (viewer.PACKAGE, viewer.VERSION) == ("@asyncapi/react-component", "3.1.5")
    assert tarball_url(registry()).endswith(
        "/@asyncapi/react-component/-/react-component-3.1.5.tgz"
    )
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:4873/")
    assert tarball_url(registry()) == (
        "http://127.0.0.1:4873/@asyncapi/react-component/-/react-component-3.1.5.tgz"
    )


def test_the_viewers_files_are_installed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tarball(MEMBERS)
    monkeypatch.setattr(viewer, "INTEGRITY", integrity(data))
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return data

    folder = tmp_path / "viewer"
    assert install_viewer(folder, fetch=fetch) is True
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MARKER, viewer.SCRIPT, viewer.STYLES, viewer.LICENSE]
    )
    assert (folder / viewer.SCRIPT).read_bytes() == MEMBERS["package/browser/standalone/index.js"]
    assert viewer.is_installed(folder)
    assert install_viewer(folder, fetch=fetch) is False  # nothing fetched the second time
    assert len(fetched) == 1


def test_a_download_that_does_not_match_the_pin_installs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "viewer"
    with pytest.raises(ViewerInstallError, match="the pin says sha512-"):
        install_viewer(folder, fetch=lambda url: tarball(MEMBERS))
    assert not folder.exists()
    with pytest.raises(ViewerInstallError):
        check_integrity(b"tampered", integrity(b"original"))
    check_integrity(b"original", integrity(b"original"))


def test_a_package_without_the_bundle_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tarball({"package/LICENSE": b"x"})
    monkeypatch.setattr(viewer, "INTEGRITY", integrity(data))
    with pytest.raises(ViewerInstallError, match=r"no package/browser/standalone/index\.js"):
        install_viewer(tmp_path / "viewer", fetch=lambda url: data)
    assert not viewer.is_installed(tmp_path / "viewer")
