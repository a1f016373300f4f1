"""The ingester serves the topics' AsyncAPI document (YAML, JSON) and its page, offline: the page
loads only this server's own files, and says what to run when the viewer is not installed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from services.ingester.app import SERVICE
from services.ingester.asyncapi_page import AsyncAPIFiles, serve_asyncapi
from shared import asyncapi_viewer
from shared.broker import build_broker
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import IngestSettings, Settings

REPO = Path(__file__).resolve().parents[3]
DOCUMENT = REPO / "docs" / "asyncapi.yaml"
# A stand-in for the viewer's files, with characters beyond ASCII (the real bundle has some).
SCRIPT = "window.AsyncApiStandalone = {render() {}}; // « bundle »\n"
STYLES = ".asyncapi { content: '→'; }\n"


def client(files: AsyncAPIFiles) -> httpx.AsyncClient:
    app = FastAPI()
    serve_asyncapi(app, files)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingester")


@pytest.fixture
def viewer(tmp_path: Path) -> Path:
    folder = tmp_path / "viewer"
    folder.mkdir()
    (folder / asyncapi_viewer.SCRIPT).write_text(SCRIPT, encoding="utf-8")
    (folder / asyncapi_viewer.STYLES).write_text(STYLES, encoding="utf-8")
    return folder


@pytest.fixture
async def api(viewer: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client(AsyncAPIFiles(DOCUMENT, viewer)) as http:
        yield http


def urls_in(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)


async def test_the_document_is_served_as_yaml_and_json(api: httpx.AsyncClient) -> None:
    as_yaml = await api.get("/asyncapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"] == "application/yaml; charset=utf-8"
    assert as_yaml.text == DOCUMENT.read_text(encoding="utf-8")
    as_json = await api.get("/asyncapi.json")
    assert as_json.status_code == 200
    assert as_json.json() == yaml.safe_load(as_yaml.text)
    assert "records.judged" in as_json.json()["channels"]


async def test_the_page_renders_the_document_with_this_servers_files_only(
    api: httpx.AsyncClient,
) -> None:
    page = await api.get("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "http://" not in page.text and "https://" not in page.text
    urls = urls_in(page.text)
    assert sorted(urls) == [
        "asyncapi/assets/asyncapi-viewer.css",
        "asyncapi/assets/asyncapi-viewer.js",
    ]
    assert "AsyncApiStandalone.render(" in page.text
    assert '"records.judged.dlq"' in page.text  # the document itself is in the page
    for url in urls:  # relative to the page: the same server, behind any path prefix
        asset = await api.get(f"/{url}")
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].endswith("charset=utf-8")
    script = await api.get("/asyncapi/assets/asyncapi-viewer.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.text == SCRIPT
    styles = await api.get("/asyncapi/assets/asyncapi-viewer.css")
    assert styles.headers["content-type"] == "text/css; charset=utf-8" and styles.text == STYLES


async def test_nothing_else_is_served_from_the_viewers_folder(api: httpx.AsyncClient) -> None:
    for name in ("LICENSE", "..%2F..%2Fetc%2Fpasswd", "index.js"):
        assert (await api.get(f"/asyncapi/assets/{name}")).status_code == 404, name


async def test_without_the_viewer_the_page_says_what_to_run(tmp_path: Path) -> None:
    missing = tmp_path / "not-installed"
    async with client(AsyncAPIFiles(DOCUMENT, missing)) as http:
        page = await http.get("/asyncapi")
        assert page.status_code == 503
        assert f"loopline asyncapi install-viewer --dir {missing}" in page.text
        assert "LOOPLINE_INGEST__ASYNCAPI_VIEWER_DIR" in page.text
        assert "http://" not in page.text and "https://" not in page.text
        assert (await http.get("/asyncapi/assets/asyncapi-viewer.js")).status_code == 503
        assert (await http.get("/asyncapi.yaml")).status_code == 200  # the document still is


async def test_without_the_document_every_route_says_which_setting_to_set(
    tmp_path: Path, viewer: Path
) -> None:
    async with client(AsyncAPIFiles(tmp_path / "none.yaml", viewer)) as http:
        for path in ("/asyncapi.yaml", "/asyncapi.json", "/asyncapi"):
            answer = await http.get(path)
            assert answer.status_code == 503, path
            assert "LOOPLINE_INGEST__ASYNCAPI_FILE" in answer.json()["detail"]


async def test_a_script_tag_in_the_document_cannot_break_out_of_the_page(
    tmp_path: Path, viewer: Path
) -> None:
    document: dict[str, Any] = {"asyncapi": "3.0.0", "info": {"title": "</script><b>x</b>"}}
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    async with client(AsyncAPIFiles(path, viewer)) as http:
        page = (await http.get("/asyncapi")).text
    assert page.count("</script>") == 2  # the two script elements' own
    assert "<title>&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;</title>" in page


def test_the_files_come_from_the_ingest_settings_or_the_install_dir(tmp_path: Path) -> None:
    default = AsyncAPIFiles.of(Settings(install_dir=tmp_path / "install"))
    assert default.document == Path("docs/asyncapi.yaml")
    assert default.viewer == tmp_path / "install" / "asyncapi-viewer"
    ingest = IngestSettings(asyncapi_file=tmp_path / "a.yaml", asyncapi_viewer_dir=tmp_path / "v")
    chosen = AsyncAPIFiles.of(Settings(ingest=ingest))
    assert (chosen.document, chosen.viewer) == (tmp_path / "a.yaml", tmp_path / "v")


async def test_the_ingester_service_serves_them(viewer: Path) -> None:
    """The routes are on the app the ingester's registration builds and serves."""
    ingest = IngestSettings(asyncapi_file=DOCUMENT, asyncapi_viewer_dir=viewer)
    settings = Settings(ingest=ingest)
    broker, dead_letters = build_broker(settings, SERVICE.name)
    flows = parse_flows({"flows": {"default": {}}}, "inline")
    context = ServiceContext(SERVICE.name, settings, flows, broker, dead_letters)
    SERVICE.register(context)  # the broker is never started
    try:
        [server] = context.http_servers
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingester") as http:
            assert (await http.get("/asyncapi")).status_code == 200
            document = (await http.get("/asyncapi.json")).json()
            assert document["info"]["title"] == "Loopline topics"
    finally:
        for close in context.closers:
            await close()
