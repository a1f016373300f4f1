"""The index of what a stage passed on, read back from its output topic on the real broker: what
was there before it started, and what any instance passes on afterwards."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from shared.broker import ensure_topics, producer_options
from shared.produced import ProducedIndex
from shared.settings import Settings


async def test_the_index_reads_back_what_was_passed_on_and_keeps_following(
    settings: Settings,
) -> None:
    topic = f"test.produced-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, [topic])
    producer = AIOKafkaProducer(**producer_options(settings.kafka))
    await producer.start()
    index = ProducedIndex(settings.kafka, [topic])
    try:
        for i in range(20):
            await producer.send_and_wait(topic, b"{}", key=f"before-{i}".encode())
        assert await index.contains("before-0")
        assert await index.contains("before-19")
        assert not await index.contains("never")
        # Another instance passes a record on: seen within moments.
        await producer.send_and_wait(topic, b'{"record_id": "later"}', key=b"later")
        for _ in range(100):
            if await index.contains("later"):
                break
            await asyncio.sleep(0.1)
        assert await index.contains("later")
    finally:
        await index.stop()
        await producer.stop()


async def test_an_index_over_topics_that_do_not_exist_yet_knows_nothing(
    settings: Settings,
) -> None:
    index = ProducedIndex(settings.kafka, [f"test.absent-{uuid.uuid4().hex[:8]}"])
    try:
        assert not await index.contains("r1")
    finally:
        await index.stop()
