"""The publisher's REST bulk writer: chunking, retries, refusals and giving up (nack)."""

import json
from collections.abc import Callable

import httpx
import pytest
from faststream.exceptions import NackMessage

from services.argilla_publisher.bulk import CHUNK_SIZE, BulkWriter, RefusedError

Handler = Callable[[httpx.Request], httpx.Response]


def writer(handler: Handler, sleeps: list[float], budget_s: float = 240.0) -> BulkWriter:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return BulkWriter(
        "http://127.0.0.1:1/",
        "secret-key",
        transport=httpx.MockTransport(handler),
        sleep=sleep,
        retry_budget_s=budget_s,
    )


def items(n: int) -> list[dict[str, object]]:
    return [{"external_id": f"r{i}", "fields": {"prompt": f"p{i}"}} for i in range(n)]


async def test_chunks_go_to_the_bulk_endpoint_with_the_key() -> None:
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "PUT"
        assert request.url.path == "/api/v1/datasets/d1/records/bulk"
        assert request.headers["X-Argilla-Api-Key"] == "secret-key"
        seen.append([item["external_id"] for item in json.loads(request.content)["items"]])
        return httpx.Response(200, json={"items": [], "updated_item_ids": []})

    sleeps: list[float] = []
    bulk = writer(handler, sleeps)
    await bulk.upsert("d1", "ds", items(2 * CHUNK_SIZE + 10))
    await bulk.aclose()
    assert sorted(len(chunk) for chunk in seen) == [10, CHUNK_SIZE, CHUNK_SIZE]
    assert sorted(i for chunk in seen for i in chunk) == sorted(f"r{i}" for i in range(510))
    assert sleeps == []


async def test_unavailable_argilla_is_retried_with_backoff() -> None:
    answers = iter([503, 500, 401, 200])
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        calls.append(status)
        if status == 500:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={"items": []})

    sleeps: list[float] = []
    await writer(handler, sleeps).upsert("d1", "ds", items(3))
    assert calls == [503, 500, 401, 200]
    assert sleeps == [0.5, 1.0, 2.0]


async def test_invalid_records_are_refused_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": "field 'prompt' is required"})

    sleeps: list[float] = []
    with pytest.raises(RefusedError, match=r"422.*field 'prompt' is required"):
        await writer(handler, sleeps).upsert("d1", "ds", items(1))
    assert sleeps == []


async def test_past_the_retry_budget_the_batch_is_nacked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    sleeps: list[float] = []
    with pytest.raises(NackMessage):
        await writer(handler, sleeps, budget_s=5.0).upsert("d1", "ds", items(1))
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # the next wait (8 s) would pass the 5 s budget
