"""The publisher under Argilla's and Kafka's faults, counted by record id: transient trouble is
waited out (never dead), a 413 splits the chunk, a refused record is dead-lettered alone, a
deleted dataset is re-created once per batch, and a failed `records.published` retries only
that step."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack.sample_records import record
from shared.events import Record
from shared.failures import TransientError
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla
from tests.unit.argilla_publisher.publisher_harness import flows, publisher, send

FLOW = "pub"
DATASET = f"admin/{FLOW}"


def batch(n: int, prefix: str = "r") -> list[Record]:
    return [record(flow=FLOW, record_id=f"{prefix}{i}") for i in range(n)]


def ids(records: list[Record]) -> list[str]:
    return sorted(r.record_id for r in records)


async def test_argilla_trouble_is_waited_out_and_nothing_is_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla(
        outage=[503, httpx.ConnectError, 429, httpx.ReadTimeout, 500, 502, 408, 401, 503]
    )
    records = batch(5)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, records)
    assert sorted(argilla.records(DATASET)) == ids(records)
    assert h.dead == []
    assert h.published_ids() == ids(records)
    assert len(h.sleeps) >= 9


async def test_413_splits_the_chunk_and_a_record_too_large_alone_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy in front of Argilla takes at most 2 records per request, and r5 not even alone.
    argilla = FakeArgilla(too_large_above=2, too_large_ids={"r5"})
    records = batch(8)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, records)
    good = [i for i in ids(records) if i != "r5"]
    assert sorted(argilla.records(DATASET)) == good
    assert all(len(upsert) <= 2 for upsert in argilla.upserts())
    assert set(h.dead_by_id()) == {"r5"}
    letter = h.dead_by_id()["r5"]
    assert "413" in letter.error and "too large" in letter.error
    assert letter.attempts == 1
    assert h.published_ids() == good


async def test_a_refused_record_is_dead_lettered_alone_and_the_rest_lands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla(invalid_ids={"r3", "r7"})
    records = batch(10)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, records)
    good = [i for i in ids(records) if i not in ("r3", "r7")]
    assert sorted(argilla.records(DATASET)) == good
    assert sorted(h.dead_by_id()) == ["r3", "r7"]
    for letter in h.dead:
        assert "422" in letter.error and "scripted reason" in letter.error
    assert h.published_ids() == good


async def test_a_deleted_dataset_is_recreated_and_the_batch_lands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla()
    records = batch(4)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        [first] = list(argilla.datasets)
        argilla.delete(first)  # someone deleted the dataset in Argilla's UI
        await send(h, records)
    assert h.prepared == [FLOW, FLOW]  # at start-up, then once after the 404
    assert sorted(argilla.records(DATASET)) == ids(records)
    assert h.dead == []
    assert h.published_ids() == ids(records)


async def test_a_dataset_still_missing_after_recreating_is_dead_lettered_with_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla(not_found=True)
    first, second = batch(3, "a"), batch(2, "b")
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, first)
        await send(h, second)
    assert h.prepared == [FLOW, FLOW, FLOW]  # start-up, then at most once per batch
    assert sorted(h.dead_by_id()) == ids(first + second)
    for letter in h.dead:
        assert "404" in letter.error and "re-created" in letter.error
        assert DATASET in letter.error
    assert h.published == []


async def test_a_kafka_failure_after_argilla_accepted_retries_only_the_announcement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla()
    records = batch(3)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        h.publish_failures = 4
        await send(h, records)
    assert argilla.upserts() == [ids(records)]  # upserted once, never again
    assert h.dead == []
    assert h.published_ids() == ids(records)  # each announced exactly once


async def test_a_transient_failure_while_reading_the_batch_is_retried_not_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.argilla_publisher import app as publisher_app

    argilla, records, failures = FakeArgilla(), batch(3), [2]
    real_decide = publisher_app.decide

    def decide(record: Record, when: Any) -> Any:
        if record.record_id == "r1" and failures[0] > 0:
            failures[0] -= 1
            raise TransientError("scripted: the flow file is being reloaded")
        return real_decide(record, when)

    monkeypatch.setattr(publisher_app, "decide", decide)
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, records)
    assert h.dead == []
    assert sorted(argilla.records(DATASET)) == ids(records)
    assert h.published_ids() == ids(records)
