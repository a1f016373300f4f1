"""Client retries are safe: one Idempotency-Key ingests once (concurrent requests included), the
remembered answers are bounded in bytes, and a record whose publish failed is not remembered as
seen, as an exact or a near-duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.ingester.idempotency import ReplyCache
from services.ingester.pipeline import Message
from shared.settings import IngestSettings
from tests.unit.ingester.http_app import RecordingPublisher, ingester


@dataclass
class GatedPublisher(RecordingPublisher):
    """Holds every publish until `gate` opens."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish_many(self, messages: Sequence[Message]) -> None:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        self.sent.extend(message[:3] for message in messages)  # the trace context aside


async def test_concurrent_requests_with_one_key_ingest_once() -> None:
    publisher = GatedPublisher()
    batch = [{"instruction": "Same question"}, {"instruction": "Another"}]
    async with ingester(publisher=publisher) as ing:
        first = asyncio.create_task(ing.post(batch, **{"idempotency-key": "k1"}))
        await publisher.entered.wait()
        second = asyncio.create_task(ing.post(batch, **{"idempotency-key": "k1"}))
        for _ in range(200):  # let the second request run as far as it can
            await asyncio.sleep(0)
        publisher.gate.set()
        answers = await asyncio.gather(first, second)
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert answers[1].headers.get("idempotent-replay") == "true"
    assert publisher.calls == 1 and len(publisher.sent) == 2


async def test_a_key_reused_for_another_body_is_422() -> None:
    async with ingester() as ing:
        first = await ing.post({"instruction": "one"}, **{"idempotency-key": "k"})
        assert first.status_code == 200
        other = await ing.post({"instruction": "two"}, **{"idempotency-key": "k"})
    assert other.status_code == 422, other.text
    assert "Idempotency-Key" in other.json()["detail"]
    assert len(ing.publisher.sent) == 1


async def test_a_failed_request_is_not_replayed_and_its_retry_goes_through() -> None:
    async with ingester() as ing:
        ing.publisher.fail_next = True
        failed = await ing.post({"record_id": "r", "instruction": "x"}, **{"idempotency-key": "k"})
        assert failed.status_code == 503, failed.text
        assert "retry" in failed.json()["detail"]
        retried = await ing.post({"record_id": "r", "instruction": "x"}, **{"idempotency-key": "k"})
        assert retried.status_code == 200 and "idempotent-replay" not in retried.headers
        assert retried.json()["accepted"] == ["r"] and retried.json()["duplicates"] == []
    assert ing.publisher.ids() == ["r"]


def test_the_reply_cache_is_bounded_in_bytes() -> None:
    now = [0.0]
    cache = ReplyCache(window_s=60, max_bytes=10_000, clock=lambda: now[0])
    for key in "abc":
        cache.add(key, "fingerprint", 200, b"x" * 4000)
    assert cache.get("a") is None  # 3 x 4000 bytes do not fit in 10,000: the oldest went
    assert cache.get("b") is not None and cache.get("c") is not None
    assert cache.size_bytes <= 10_000
    cache.add("huge", "fingerprint", 200, b"x" * 20_000)  # larger than the bound: not kept
    assert cache.get("huge") is None and cache.get("c") is not None
    now[0] = 61
    assert cache.get("c") is None and cache.size_bytes == 0


async def test_a_large_answer_is_not_kept_past_the_byte_bound() -> None:
    batch = [{"instruction": f"question {i}"} for i in range(100)]  # a ~4 KB answer
    async with ingester(IngestSettings(idempotency_max_bytes=1024)) as ing:
        first = await ing.post(batch, **{"idempotency-key": "big"})
        second = await ing.post(batch, **{"idempotency-key": "big"})
    assert first.status_code == second.status_code == 200
    assert "idempotent-replay" not in second.headers  # not remembered; dedup answers instead
    assert len(second.json()["duplicates"]) == 100
    assert len(ing.publisher.sent) == 100


async def test_a_near_duplicate_whose_publish_failed_is_not_remembered() -> None:
    text = (
        "Explain how a Kafka consumer group shares the partitions of a topic between its "
        "members, what happens when a member leaves, and how offsets are committed safely."
    )
    record = {"flow": "near", "record_id": "n1", "instruction": text}
    async with ingester() as ing:
        ing.publisher.fail_next = True
        failed = await ing.post(record)
        assert failed.status_code == 503, failed.text
        retried = await ing.post(record)
        assert retried.json()["duplicates"] == [], retried.text
        assert ing.publisher.ids() == ["n1"]
        # Now it is remembered: a near-copy under another id is a duplicate.
        near = await ing.post({**record, "record_id": "n2", "instruction": text + " Thanks!"})
        assert near.json()["duplicates"] == ["n2"]
    assert ing.publisher.ids() == ["n1"]
