"""The publisher's metrics move as a batch goes into Argilla: the publish's duration per flow,
each request's duration and failures by status (no answer: `unreachable`), the records in
Argilla per flow and the one Argilla refused as a dead letter."""

from __future__ import annotations

import httpx
import pytest

from devstack.sample_records import record
from shared.events import RECORDS_JUDGED
from tests.support.metrics import value
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla
from tests.unit.argilla_publisher.publisher_harness import flows, publisher, send

FLOW = "publisher-metrics"
SERVICE = "argilla-publisher"


def readings() -> dict[str, float]:
    def failures(operation: str, status: str) -> float:
        return value("loopline_argilla_request_failures_total", operation=operation, status=status)

    def requests(operation: str) -> float:
        return value("loopline_argilla_request_duration_seconds_count", operation=operation)

    return {
        "publishes": value("loopline_argilla_publish_duration_seconds_count", flow=FLOW),
        "search 503": failures("search", "503"),
        "search unreachable": failures("search", "unreachable"),
        "bulk 422": failures("bulk", "422"),
        "searches": requests("search"),
        "upserts": requests("bulk"),
        "in Argilla": value(
            "loopline_records_total", service=SERVICE, flow=FLOW, stage="published"
        ),
        "dead": value(
            "loopline_dead_letters_total",
            service=SERVICE,
            topic=RECORDS_JUDGED,
            error_type="RefusedError",
        ),
    }


async def test_publish_latency_failures_and_records_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla(outage=[503, httpx.ConnectError], invalid_ids={"m1"})
    records = [record(flow=FLOW, record_id=f"m{i}") for i in range(3)]
    before = readings()
    async with publisher(monkeypatch, argilla, flows(**{FLOW: {"plugin": "preference"}})) as h:
        await send(h, records)
    after = readings()
    assert sorted(argilla.records(f"admin/{FLOW}")) == ["m0", "m2"]
    assert {name: after[name] - before[name] for name in before} == {
        "publishes": 1,
        "search 503": 1,
        "search unreachable": 1,
        "bulk 422": 3,  # the chunk, then the half holding m1, then m1 alone
        "searches": 3,
        "upserts": 5,
        "in Argilla": 2,
        "dead": 1,
    }
