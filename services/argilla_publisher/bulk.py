"""Bulk upserts into Argilla over its REST API, asynchronously, by kind of answer.

The SDK's `dataset.records.log` is synchronous (a thread per call), asks the server who the
caller is on every call, and parses every record the server sends back into models. The
publisher needs none of that: it builds each record's payload once, with the SDK's own record
model so the wire format stays the SDK's, and sends chunks with one pooled `httpx.AsyncClient`,
a few at once, reading back only the status.

What Argilla answers decides what happens (`_check`), per chunk:

* 5xx, 429, 408, timeouts and connection errors are Argilla's trouble, and so are 401/403 (a
  key or a role being fixed: no record is at fault): `TransientError`, retried in place by the
  service's retry policy (`DeadLetters.with_retries`) for as long as it lasts, the health
  endpoint saying why. Nothing is dead-lettered for it.
* 413 (the request is too large, often from a proxy): the chunk is split in halves, down to one
  record; a record refused alone is reported refused (`TooLargeError`).
* Other 4xx (400, 422, ...): the chunk is refused as it is (an Argilla upsert is all or
  nothing). It is bisected to find the offending records, so the good ones land; each record
  refused alone is reported refused (`RefusedError`) with Argilla's reason.
* 404: the dataset is gone (deleted in the UI, say). The chunks not sent yet are left pending
  (`UpsertResult.missing`), for the publisher to re-create the dataset and try once more.

Before upserting a chunk, one search request asks Argilla which of its records already have a
response (submitted, draft or discarded): those are not sent again (`UpsertResult.answered`),
so the version annotators answered is the one kept and exported. An annotator answering between
that lookup and the upsert (a few milliseconds) is the one case it cannot see.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.failures import PermanentError, TransientError
from shared.metrics import ARGILLA_REQUEST_FAILURES, ARGILLA_REQUEST_SECONDS

log = logging.getLogger("loopline.argilla_publisher")

CHUNK_SIZE = 250  # the server takes at most 500 records per bulk request, 250 terms per filter
PARALLEL_CHUNKS = 3  # the server indexes one chunk while it stores the next
ANSWERED = ("submitted", "draft", "discarded")  # a response people gave, in any state
MAX_DETAIL_CHARS = 2000

# The service's retry policy: `operation` retried by kind of failure (transient ones for as long
# as they last), described by `what` while it waits; the last error raised.
Retry = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


class RefusedError(PermanentError):
    """Argilla refused the record as it is: retrying cannot help."""


class TooLargeError(RefusedError):
    """Argilla (or a proxy before it) refused the record as too large (413), even alone."""


class DatasetMissingError(PermanentError):
    """Argilla answered 404 for the dataset: it was deleted, or never reached."""


@dataclass
class UpsertResult:
    """What became of each item of an upsert, by position."""

    upserted: list[int] = field(default_factory=list)  # in Argilla, as sent
    answered: list[int] = field(default_factory=list)  # kept as annotators answered it
    refused: dict[int, RefusedError] = field(default_factory=dict)  # with Argilla's reason
    missing: DatasetMissingError | None = None  # the dataset is gone; the rest was not sent

    def pending(self, count: int) -> list[int]:
        """The positions of `count` items that were neither upserted, kept nor refused."""
        settled = {*self.upserted, *self.answered, *self.refused}
        return [position for position in range(count) if position not in settled]


def payload(record: Any, dataset: Any) -> dict[str, Any]:
    """One `rg.Record` as the bulk endpoint takes it (suggestions need the dataset's questions)."""
    record.dataset = dataset
    body: dict[str, Any] = record.api_model().model_dump(mode="json")
    return body


def answered_query(external_ids: Sequence[str]) -> dict[str, Any]:
    """The search body for the records among `external_ids` that have any response."""
    return {
        "filters": {
            "and": [
                {
                    "type": "terms",
                    "scope": {"entity": "record", "property": "external_id"},
                    "values": list(external_ids),
                },
                {
                    "type": "terms",
                    "scope": {"entity": "response", "property": "status"},
                    "values": list(ANSWERED),
                },
            ]
        }
    }


def _check(response: httpx.Response, what: str) -> None:
    """Raise by kind of answer (see the module's docstring); return on success."""
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:MAX_DETAIL_CHARS]
    if status == 404:
        raise DatasetMissingError(f"Argilla answered 404 to {what}: {detail}")
    if status == 413:
        raise TooLargeError(f"Argilla refused the record as too large (413) in {what}: {detail}")
    if status in (401, 403, 408, 429) or status >= 500:
        raise TransientError(f"Argilla answered {status} to {what}: {detail}")
    raise RefusedError(f"Argilla refused the records ({status}) in {what}: {detail}")


class BulkWriter:
    """Upserts records into Argilla datasets in chunks over one connection pool."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        retry: Retry,
        timeout_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"X-Argilla-Api-Key": api_key},
            timeout=timeout_s,
            transport=transport,
        )
        self._limit = asyncio.Semaphore(PARALLEL_CHUNKS)
        self._retry = retry

    async def aclose(self) -> None:
        await self._client.aclose()

    async def upsert(
        self, dataset_id: str, name: str, items: Sequence[dict[str, Any]]
    ) -> UpsertResult:
        """Upsert `items` (payloads with their `external_id`) into the dataset, except those
        annotators answered already; returns once every item is settled or the dataset is
        found missing."""
        result = UpsertResult()
        positions = list(range(len(items)))
        chunks = [positions[i : i + CHUNK_SIZE] for i in range(0, len(positions), CHUNK_SIZE)]
        outcomes = await asyncio.gather(
            *(self._chunk(dataset_id, name, items, c, result) for c in chunks),
            return_exceptions=True,  # every chunk settles before a failure is raised
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return result

    async def _chunk(
        self,
        dataset_id: str,
        name: str,
        items: Sequence[dict[str, Any]],
        chunk: list[int],
        result: UpsertResult,
    ) -> None:
        try:
            answered = await self.answered(
                dataset_id, name, [items[p]["external_id"] for p in chunk]
            )
            result.answered.extend(p for p in chunk if items[p]["external_id"] in answered)
            fresh = [p for p in chunk if items[p]["external_id"] not in answered]
            await self._send(dataset_id, name, items, fresh, result)
        except DatasetMissingError as exc:
            result.missing = exc

    async def answered(self, dataset_id: str, name: str, external_ids: Sequence[str]) -> set[str]:
        """Which of `external_ids` (at most `CHUNK_SIZE`) have a response in the dataset."""
        what = f"looking up answered records in {name}"

        async def search() -> set[str]:
            try:
                response = await self._request(
                    "POST",
                    f"/api/v1/datasets/{dataset_id}/records/search",
                    what,
                    params={"limit": len(external_ids)},
                    json=answered_query(external_ids),
                )
            except RefusedError as exc:  # not the records' fault: wait for a fix, never skip
                raise TransientError(str(exc)) from exc
            return {
                str(hit["record"]["external_id"])
                for hit in response.json().get("items", [])
                if hit.get("record")
            }

        found: set[str] = await self._retry(search, what)
        return found

    async def _send(
        self,
        dataset_id: str,
        name: str,
        items: Sequence[dict[str, Any]],
        positions: list[int],
        result: UpsertResult,
    ) -> None:
        if not positions:
            return
        body = {"items": [items[p] for p in positions]}
        what = f"upserting {len(positions)} record(s) into {name}"
        try:
            await self._retry(
                lambda: self._request(
                    "PUT", f"/api/v1/datasets/{dataset_id}/records/bulk", what, json=body
                ),
                what,
            )
        except RefusedError as exc:
            refused = exc
        else:
            result.upserted.extend(positions)
            return
        if len(positions) == 1:
            result.refused[positions[0]] = refused
            return
        log.warning("%s; trying it in halves to find the records at fault", refused)
        half = len(positions) // 2
        outcomes = await asyncio.gather(
            self._send(dataset_id, name, items, positions[:half], result),
            self._send(dataset_id, name, items, positions[half:], result),
            return_exceptions=True,  # both halves settle before a failure is raised
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _request(self, method: str, path: str, what: str, **options: Any) -> httpx.Response:
        operation = path.rsplit("/", 1)[-1]  # `search` or `bulk`: the metrics' label
        async with self._limit:  # held per request only: halves of a chunk take their turn
            started = time.perf_counter()
            try:
                response = await self._client.request(method, path, **options)
            except httpx.TransportError:
                ARGILLA_REQUEST_FAILURES.labels(operation=operation, status="unreachable").inc()
                raise
            finally:
                ARGILLA_REQUEST_SECONDS.labels(operation=operation).observe(
                    time.perf_counter() - started
                )
        if response.status_code >= 400:
            status = str(response.status_code)
            ARGILLA_REQUEST_FAILURES.labels(operation=operation, status=status).inc()
        _check(response, what)
        return response
