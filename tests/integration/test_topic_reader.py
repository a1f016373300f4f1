"""Reading a topic to its end on the real broker gets every message, even where the broker
reports a partition's end too low (Tansu reports the start of the last batch plus one when
that batch holds several records)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from shared.broker import ensure_topics, producer_options
from shared.settings import Settings
from shared.topic_reader import read_to_end


async def test_every_batched_message_is_read_back(settings: Settings) -> None:
    topic = f"test.reader-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka, [topic])
    producer = AIOKafkaProducer(**producer_options(settings.kafka), linger_ms=50)
    await producer.start()
    try:
        sent = [producer.send(topic, str(i).encode(), key=str(i).encode()) for i in range(300)]
        await asyncio.gather(*[await future for future in sent])
    finally:
        await producer.stop()
    read = [m.value async for batch in read_to_end(settings.kafka, [topic]) for m in batch]
    assert sorted(int(v or b"-1") for v in read) == list(range(300))
