"""Bulk upserts into Argilla over its REST API, asynchronously.

The SDK's `dataset.records.log` is synchronous (a thread per call), asks the server who the
caller is on every call, and parses every record the server sends back into models. The
publisher needs none of that: it builds each record's payload once, with the SDK's own record
model so the wire format stays the SDK's, and sends chunks with one pooled `httpx.AsyncClient`,
a few at once, reading back only the status.

Argilla refusing a chunk as invalid (400/422) is the data's fault: `RefusedError`, and the
records go to the dead-letter topic. Anything else (unreachable, 5xx, timeouts, a key being
fixed) is Argilla's trouble: back off and retry; past the retry budget the batch is nacked and
consumed again, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from faststream.exceptions import NackMessage

log = logging.getLogger("loopline.argilla_publisher")

CHUNK_SIZE = 250  # the server takes at most 500 records per bulk request
PARALLEL_CHUNKS = 3  # the server indexes one chunk while it stores the next
RETRY_BUDGET_S = 240.0  # then the batch fails, is consumed again, and retried again
BACKOFF_MAX_S = 30.0
REFUSED_STATUS = (400, 422)

Sleep = Callable[[float], Awaitable[None]]


class RefusedError(ValueError):
    """Argilla refused the records as they are: retrying cannot help."""


def payload(record: Any, dataset: Any) -> dict[str, Any]:
    """One `rg.Record` as the bulk endpoint takes it (suggestions need the dataset's questions)."""
    record.dataset = dataset
    body: dict[str, Any] = record.api_model().model_dump(mode="json")
    return body


class BulkWriter:
    """Upserts records into Argilla datasets in chunks over one connection pool."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout_s: float = 120.0,
        retry_budget_s: float = RETRY_BUDGET_S,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"X-Argilla-Api-Key": api_key},
            timeout=timeout_s,
            transport=transport,
        )
        self._limit = asyncio.Semaphore(PARALLEL_CHUNKS)
        self._sleep = sleep
        self._retry_budget_s = retry_budget_s

    async def aclose(self) -> None:
        await self._client.aclose()

    async def upsert(self, dataset_id: str, name: str, items: Sequence[dict[str, Any]]) -> None:
        """Upsert `items` (payloads) into the dataset; returns once Argilla has them all."""
        chunks = [items[i : i + CHUNK_SIZE] for i in range(0, len(items), CHUNK_SIZE)]
        await asyncio.gather(*(self._chunk(dataset_id, name, c) for c in chunks))

    async def _chunk(self, dataset_id: str, name: str, items: Sequence[dict[str, Any]]) -> None:
        async with self._limit:
            deadline = time.monotonic() + self._retry_budget_s
            delay = 0.5
            while True:
                try:
                    await self._put(dataset_id, items)
                    return
                except httpx.HTTPError as exc:  # Argilla's trouble (a refusal is not one)
                    if time.monotonic() + delay > deadline:
                        log.error(
                            "Argilla still failing after %.0fs; the batch will be consumed again",
                            self._retry_budget_s,
                        )
                        raise NackMessage() from exc
                    log.warning(
                        "Argilla upsert of %d record(s) into %s failed (%s: %s); retrying in %.1fs",
                        len(items),
                        name,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await self._sleep(delay)
                    delay = min(BACKOFF_MAX_S, delay * 2)

    async def _put(self, dataset_id: str, items: Sequence[dict[str, Any]]) -> None:
        # The server echoes every record back; only the status matters here.
        response = await self._client.put(
            f"/api/v1/datasets/{dataset_id}/records/bulk", json={"items": list(items)}
        )
        if response.status_code in REFUSED_STATUS:
            detail = response.text[:2000]
            raise RefusedError(f"Argilla refused the records ({response.status_code}): {detail}")
        response.raise_for_status()
