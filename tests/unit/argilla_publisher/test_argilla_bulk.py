"""The publisher's REST bulk writer against `FakeArgilla`, under the service's real retry policy:
chunking, the lookup of answered records, and what each Argilla answer leads to."""

from __future__ import annotations

import math

import httpx
import pytest

from services.argilla_publisher.bulk import (
    ANSWERED,
    CHUNK_SIZE,
    BulkWriter,
    RefusedError,
    TooLargeError,
    _check,
)
from shared.dead_letters import DeadLetters
from shared.failures import Failure, classify
from shared.settings import RetrySettings
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla


class Policy:
    """The service's retry policy with a recorded, instant sleep (and what it waited on)."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.waiting: list[str | None] = []
        self.dead_letters = DeadLetters("unit", RetrySettings(), sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.waiting.append(self.dead_letters.waiting_on)


def writer(argilla: FakeArgilla, policy: Policy) -> BulkWriter:
    return BulkWriter(
        "http://127.0.0.1:1/",
        "secret-key",
        retry=policy.dead_letters.with_retries,
        transport=argilla.transport(),
    )


def items(n: int) -> list[dict[str, object]]:
    return [{"external_id": f"r{i}", "fields": {"prompt": f"p{i}"}} for i in range(n)]


async def test_chunks_are_looked_up_then_upserted() -> None:
    argilla, policy = FakeArgilla(), Policy()
    dataset = argilla.create("ds")
    bulk = writer(argilla, policy)
    result = await bulk.upsert(dataset, "ds", items(2 * CHUNK_SIZE + 10))
    await bulk.aclose()
    assert sorted(result.upserted) == list(range(2 * CHUNK_SIZE + 10))
    assert result.answered == [] and result.refused == {} and result.missing is None
    assert sorted(argilla.datasets[dataset]) == sorted(f"r{i}" for i in range(2 * CHUNK_SIZE + 10))
    lookups = [c.external_ids for c in argilla.calls if c.method == "POST"]
    assert sorted(len(ids) for ids in lookups) == [10, CHUNK_SIZE, CHUNK_SIZE]
    assert sorted(len(ids) for ids in argilla.upserts()) == [10, CHUNK_SIZE, CHUNK_SIZE]
    assert policy.sleeps == []


async def test_answered_records_are_not_sent_again() -> None:
    argilla, policy = FakeArgilla(), Policy()
    dataset = argilla.create("ds")
    bulk = writer(argilla, policy)
    await bulk.upsert(dataset, "ds", items(CHUNK_SIZE + 5))
    for position, status in ((3, "submitted"), (7, "draft"), (CHUNK_SIZE + 1, "discarded")):
        argilla.answer(dataset, f"r{position}", status)
    again = [{**item, "fields": {"prompt": "changed"}} for item in items(CHUNK_SIZE + 5)]
    result = await bulk.upsert(dataset, "ds", again)
    await bulk.aclose()
    assert sorted(result.answered) == [3, 7, CHUNK_SIZE + 1]
    assert len(result.upserted) == CHUNK_SIZE + 2
    prompts = {i: r["fields"]["prompt"] for i, r in argilla.datasets[dataset].items()}
    assert prompts["r3"] == "p3" and prompts["r7"] == "p7"  # as annotators saw them
    assert prompts[f"r{CHUNK_SIZE + 1}"] == f"p{CHUNK_SIZE + 1}"
    assert prompts["r4"] == "changed"
    assert set(ANSWERED) == {"submitted", "draft", "discarded"}


async def test_transient_answers_are_retried_for_as_long_as_they_last() -> None:
    faults: list[int | type[Exception]] = [503, httpx.ConnectError, 429, httpx.ReadTimeout]
    argilla, policy = FakeArgilla(outage=[*faults * 5, 500, 401, 403, 408]), Policy()
    dataset = argilla.create("ds")
    result = await writer(argilla, policy).upsert(dataset, "ds", items(3))
    assert sorted(result.upserted) == [0, 1, 2] and result.refused == {}
    assert len(policy.sleeps) == 24  # more than any bounded number of attempts
    assert max(policy.sleeps) <= RetrySettings().backoff_max_s * 1.1
    assert all(w is not None for w in policy.waiting)
    assert any(
        "Argilla answered 503 to looking up answered records in ds" in str(w)
        for w in policy.waiting
    )


async def test_a_refused_lookup_waits_instead_of_skipping_the_check() -> None:
    argilla, policy = FakeArgilla(outage=[422]), Policy()
    dataset = argilla.create("ds")
    result = await writer(argilla, policy).upsert(dataset, "ds", items(2))
    assert sorted(result.upserted) == [0, 1]
    assert [(c.method, c.status) for c in argilla.calls] == [
        ("POST", 422),
        ("POST", 200),
        ("PUT", 200),
    ]


async def test_413_halves_the_chunk_down_to_the_record() -> None:
    argilla, policy = FakeArgilla(too_large_above=3, too_large_ids={"r9"}), Policy()
    dataset = argilla.create("ds")
    result = await writer(argilla, policy).upsert(dataset, "ds", items(16))
    assert sorted(result.upserted) == [i for i in range(16) if i != 9]
    assert list(result.refused) == [9]
    assert isinstance(result.refused[9], TooLargeError)
    assert "too large (413)" in str(result.refused[9])
    assert all(len(ids) <= 3 for ids in argilla.upserts())
    assert policy.sleeps == []


async def test_a_refused_chunk_is_bisected_to_the_bad_record() -> None:
    argilla, policy = FakeArgilla(invalid_ids={"r11"}), Policy()
    dataset = argilla.create("ds")
    result = await writer(argilla, policy).upsert(dataset, "ds", items(32))
    assert sorted(result.upserted) == [i for i in range(32) if i != 11]
    assert list(result.refused) == [11]
    assert "422" in str(result.refused[11]) and "scripted reason" in str(result.refused[11])
    puts = [c for c in argilla.calls if c.method == "PUT"]
    assert len(puts) <= 2 * math.log2(32) + 1  # halves, not one request per record
    assert policy.sleeps == []


async def test_a_missing_dataset_leaves_the_records_pending() -> None:
    argilla, policy = FakeArgilla(), Policy()
    dataset = argilla.create("ds")
    argilla.delete(dataset)
    result = await writer(argilla, policy).upsert(dataset, "ds", items(CHUNK_SIZE + 1))
    assert result.missing is not None and "404" in str(result.missing)
    assert result.pending(CHUNK_SIZE + 1) == list(range(CHUNK_SIZE + 1))
    assert argilla.upserts() == []


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, Failure.transient),
        (502, Failure.transient),
        (503, Failure.transient),
        (504, Failure.transient),
        (429, Failure.transient),
        (408, Failure.transient),
        (401, Failure.transient),  # a key being fixed: no record is at fault
        (403, Failure.transient),
        (400, Failure.permanent),
        (409, Failure.permanent),
        (422, Failure.permanent),
        (413, Failure.permanent),
        (404, Failure.permanent),
    ],
)
def test_each_status_has_one_kind(status: int, kind: Failure) -> None:
    response = httpx.Response(status, text="why", request=httpx.Request("PUT", "http://a/"))
    with pytest.raises(Exception) as caught:
        _check(response, "upserting 1 record(s) into ds")
    assert classify(caught.value) == kind
    assert str(status) in str(caught.value) and "why" in str(caught.value)
    if status in (400, 409, 422):
        assert isinstance(caught.value, RefusedError)
