"""The AsyncAPI web viewer the ingester's `/asyncapi` page runs: which package, and where it lives.

The page renders the topics' document with the npm package `@asyncapi/react-component` (its
standalone browser bundle and styles), served by the ingester itself: nothing is loaded from
another host. The package is installed, pinned and checked against its registry integrity, by
`loopline stack install` (into the install dir) or `loopline asyncapi install-viewer --dir DIR`
(a container image); `LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR` tells the ingester where it is.
"""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings

PACKAGE = "@asyncapi/react-component"
VERSION = "3.1.5"
# The registry's own record of the tarball (`npm view @asyncapi/react-component@3.1.5 dist`).
INTEGRITY = (
    "sha512-"
    "Aq4I++uX6lOWxgBn+D7ly/GXasHjVcORz8eIGii8RgFjZ0i8mDth6LjFHb/yHVr3ANxLFLodXUgwEBhcSvfV/Q=="
)
# The viewer's folder under the install dir, unless the setting names another.
FOLDER = "asyncapi-viewer"
SCRIPT = "index.js"
STYLES = "default.min.css"
LICENSE = "LICENSE"
# Tarball member -> file in the viewer's folder.
FILES = {
    "package/browser/standalone/index.js": SCRIPT,
    "package/styles/default.min.css": STYLES,
    "package/LICENSE": LICENSE,
}
INSTALL_COMMAND = "loopline asyncapi install-viewer"


def viewer_dir(settings: Settings) -> Path:
    """Where the viewer's files are: `LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR`, else
    `<install_dir>/asyncapi-viewer`."""
    configured = settings.ingest.asyncapi_viewer_dir
    return configured if configured is not None else settings.install_dir / FOLDER


def is_installed(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (SCRIPT, STYLES))
