"""Rows sent through the ingester's HTTP API come back as the pipeline's own answer: accepted
ids and per-row rejections; a server error is not taken for an answer."""

from __future__ import annotations

import httpx
import pytest

from cli.http_ingest import HttpIngest, IngesterUnavailable
from shared.settings import ApiKey, IngestSettings
from tests.unit.ingester.http_app import ingester


async def test_an_answer_per_row_comes_back() -> None:
    async with ingester() as ing:
        http = HttpIngest("http://ingester.test")
        http.client = ing.client
        assert await http.ready()
        result = await http.ingest(
            [{"record_id": "good", "instruction": "Hi?"}, {"record_id": "bad", "instruction": 3}]
        )
    assert result.accepted == ["good"]
    [rejected] = result.rejected
    assert rejected.index == 1 and rejected.errors[0].path == "instruction"
    assert ing.publisher.ids() == ["good"]


async def test_a_server_error_or_no_ingester_is_not_an_answer() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="broker unreachable")

    http = HttpIngest("http://ingester.test")
    http.client = httpx.AsyncClient(transport=httpx.MockTransport(broken))
    assert not await http.ready()
    with pytest.raises(IngesterUnavailable, match="503"):
        await http.ingest([{"instruction": "Hi?"}])


def test_the_demo_uses_a_key_that_may_ingest_into_its_flow() -> None:
    settings = IngestSettings(
        host="0.0.0.0",
        port=8123,
        api_keys=[
            ApiKey(name="other", key="k-other", flows=["other"]),
            ApiKey(name="mine", key="k-mine", flows=["default"]),
        ],
    )
    http = HttpIngest.for_flow(settings, "default")
    assert http.base_url == "http://127.0.0.1:8123"
    assert http.client.headers["authorization"] == "Bearer k-mine"
