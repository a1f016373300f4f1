"""A record's trace as the trace viewer (the stack's Phoenix) holds it, read through Phoenix's
own REST API: every span about the record (attribute `loopline.record_id`), and every span of
the trace(s) those belong to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from devstack.services import SERVICE_NAMES

PROJECT = "loopline-e2e"  # the e2e services' `openinference.project.name`
SERVICES = SERVICE_NAMES
Span = dict[str, Any]


async def _spans(client: httpx.AsyncClient, params: dict[str, str]) -> list[Span]:
    answer = await client.get(f"/v1/projects/{PROJECT}/spans", params={**params, "limit": "1000"})
    if answer.status_code == 404:  # no span in the project yet
        return []
    answer.raise_for_status()
    return list(answer.json()["data"])


async def record_trace(
    phoenix_url: str, record_id: str, done: Callable[[list[Span]], bool], timeout_s: float = 90
) -> tuple[set[str], list[Span]]:
    """The ids of the traces that hold spans about `record_id`, and all their spans, once
    `done(spans)` (Phoenix stores spans a while after they end) or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=phoenix_url, timeout=10) as client:
        while True:
            about = await _spans(client, {"attribute": f"loopline.record_id:{record_id}"})
            trace_ids = {span["context"]["trace_id"] for span in about}
            spans = [s for t in sorted(trace_ids) for s in await _spans(client, {"trace_id": t})]
            if done(spans) or time.monotonic() > deadline:
                return trace_ids, spans
            await asyncio.sleep(1.0)


def services_in(spans: list[Span]) -> set[str]:
    """The services whose spans are there (a record span's name starts with its service)."""
    names = {str(span["name"]) for span in spans}
    return {s for s in SERVICES if any(name.startswith(f"{s} ") for name in names)}
