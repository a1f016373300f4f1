"""The topics' AsyncAPI document and its rendered page, served by the ingester, offline.

- `GET /asyncapi.yaml`, `GET /asyncapi.json`: the document of every topic
  (`LOOPLINE_INGEST__ASYNCAPI_FILE`; the repository's `docs/asyncapi.yaml` by default).
- `GET /asyncapi`: the document rendered by AsyncAPI's React viewer, whose script and styles this
  server serves too (`GET /asyncapi/assets/...`, from `LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR`): the
  page loads nothing from another host. Without the viewer installed the page says what to run.

The page is this module's own: FastStream's `get_asyncapi_html` also links icons on another host.
The routes are left out of the OpenAPI document, like `/docs`, and need no API key.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from shared import asyncapi_viewer as viewer
from shared.settings import Settings

log = logging.getLogger("loopline.ingester.asyncapi")

ASSETS = "asyncapi/assets"
# Asset name -> (file in the viewer's folder, media type). Both are UTF-8 text.
ASSET_FILES = {
    "asyncapi-viewer.js": (viewer.SCRIPT, "text/javascript; charset=utf-8"),
    "asyncapi-viewer.css": (viewer.STYLES, "text/css; charset=utf-8"),
}
VIEWER_CONFIG = {
    "show": {
        "sidebar": True,
        "info": True,
        "servers": True,
        "operations": True,
        "messages": True,
        "schemas": True,
        "errors": True,
    },
    "expand": {"messageExamples": True},
    "sidebar": {"showServers": "byDefault", "showOperations": "byDefault"},
}


@dataclass(frozen=True)
class AsyncAPIFiles:
    """The document to serve, and the folder of the viewer that renders it."""

    document: Path
    viewer: Path

    @classmethod
    def of(cls, settings: Settings) -> AsyncAPIFiles:
        return cls(settings.ingest.asyncapi_file, viewer.viewer_dir(settings))


@dataclass(frozen=True)
class LoadedDocument:
    text: str = ""  # the YAML as written
    parsed: dict[str, Any] | None = None
    problem: str = ""  # why there is none

    @classmethod
    def read(cls, path: Path) -> LoadedDocument:
        try:
            text = path.read_text(encoding="utf-8")
            parsed = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problem = (
                f"the AsyncAPI document {path} cannot be read ({type(exc).__name__}); set "
                "LOOPLINE_INGEST__ASYNCAPI_FILE to docs/asyncapi.yaml of the repository "
                "(`loopline asyncapi write` makes it)"
            )
            return cls(problem=problem)
        if not isinstance(parsed, dict):
            return cls(problem=f"the AsyncAPI document {path} is not a YAML mapping")
        return cls(text, parsed)


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside an HTML <script> (no `</script>` can close it)."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def viewer_page(document: dict[str, Any]) -> str:
    """The page: the document rendered by the viewer, whose files come from this server (URLs
    relative to the page, so a path prefix in front of the ingester keeps working)."""
    title = html.escape(str(document.get("info", {}).get("title", "AsyncAPI")))
    settings = {"schema": document, "config": VIEWER_CONFIG}
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{ASSETS}/asyncapi-viewer.css">
</head>
<body>
<div id="asyncapi"></div>
<script src="{ASSETS}/asyncapi-viewer.js"></script>
<script>
window.AsyncApiStandalone.render({script_json(settings)}, document.getElementById("asyncapi"));
</script>
</body>
</html>
"""


def missing_viewer_page(folder: Path) -> str:
    command = f"{viewer.INSTALL_COMMAND} --dir {folder}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>AsyncAPI viewer not installed</title></head>
<body>
<h1>The AsyncAPI viewer is not installed</h1>
<p>This page renders the topics' document with {html.escape(viewer.PACKAGE)}
{html.escape(viewer.VERSION)}, served by the ingester itself, and its files are not in
<code>{html.escape(str(folder))}</code>. Install them there with</p>
<pre>{html.escape(command)}</pre>
<p>(<code>loopline stack install</code> does it for the local stack), or point
<code>LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR</code> at a folder that has them.</p>
<p>The document itself: <a href="asyncapi.yaml">asyncapi.yaml</a>,
<a href="asyncapi.json">asyncapi.json</a>.</p>
</body>
</html>
"""


def serve_asyncapi(app: FastAPI, files: AsyncAPIFiles) -> None:
    """Add the document's and the page's routes to the ingester's app."""
    loaded = LoadedDocument.read(files.document)
    if loaded.problem:
        log.warning("%s: /asyncapi answers 503", loaded.problem)
    unavailable = JSONResponse({"detail": loaded.problem}, status_code=503)

    @app.get("/asyncapi.yaml", include_in_schema=False)
    async def document_yaml() -> Response:
        if loaded.parsed is None:
            return unavailable
        return Response(loaded.text, media_type="application/yaml; charset=utf-8")

    @app.get("/asyncapi.json", include_in_schema=False)
    async def document_json() -> Response:
        if loaded.parsed is None:
            return unavailable
        return JSONResponse(loaded.parsed)

    @app.get("/asyncapi", include_in_schema=False)
    async def page() -> Response:
        if loaded.parsed is None:
            return unavailable
        if not viewer.is_installed(files.viewer):
            return HTMLResponse(missing_viewer_page(files.viewer), status_code=503)
        return HTMLResponse(viewer_page(loaded.parsed))

    @app.get(f"/{ASSETS}/{{name}}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSET_FILES:
            return JSONResponse({"detail": "no such asset"}, status_code=404)
        file_name, media_type = ASSET_FILES[name]
        path = files.viewer / file_name
        if not path.is_file():
            detail = f"the AsyncAPI viewer is not installed: {viewer.INSTALL_COMMAND}"
            return JSONResponse({"detail": detail}, status_code=503)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
