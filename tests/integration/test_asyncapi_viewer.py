"""The AsyncAPI page's viewer installed for real (the pinned npm package, its integrity checked,
into the install dir the local stack uses: downloaded once) and served by the ingester's routes
with the committed document. No stack is needed; the install is the only network use."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from fastapi import FastAPI

from devstack.asyncapi_viewer import install_viewer
from services.ingester.asyncapi_page import AsyncAPIFiles, serve_asyncapi
from shared import asyncapi_viewer as viewer

REPO = Path(__file__).resolve().parents[2]
INSTALLS = Path(os.environ.get("LOOPLINE_TEST_INSTALL_DIR", REPO / ".loopline" / "install"))


async def test_the_installed_viewer_is_served_with_the_page() -> None:
    folder = INSTALLS / viewer.FOLDER
    install_viewer(folder, print)
    assert viewer.is_installed(folder)
    assert "Apache License" in (folder / viewer.LICENSE).read_text(encoding="utf-8")
    app = FastAPI()
    serve_asyncapi(app, AsyncAPIFiles(REPO / "docs" / "asyncapi.yaml", folder))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingester") as http:
        page = await http.get("/asyncapi")
        assert page.status_code == 200
        assert "https://" not in page.text and "http://" not in page.text
        script = await http.get("/asyncapi/assets/asyncapi-viewer.js")
        assert script.status_code == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.content == (folder / viewer.SCRIPT).read_bytes()
        assert len(script.content) > 1_000_000  # the standalone bundle, parser included
        assert "AsyncApiStandalone" in script.content.decode("utf-8")  # what the page calls
        styles = await http.get("/asyncapi/assets/asyncapi-viewer.css")
        assert styles.status_code == 200
        assert styles.content == (folder / viewer.STYLES).read_bytes()
