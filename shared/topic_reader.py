"""Reading topics up to their current end, without a consumer group (nothing is committed).

For work that needs "everything up to now" from some starting point: the feedback collector's
state, the exporter's catch-up (`loopline export`), the dead letters `loopline dlq` reads.

`read_to_end` takes logical topic names (`shared.events`) and reads the flow set's topics
(`KafkaSettings.topic`); the messages it yields carry the topics' names on the cluster.
`partitions_of` works on a consumer, with names on the cluster.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.broker import admin_client_options
from shared.settings import KafkaSettings

# (partition, its first offset, its end offset) -> where to start reading it
StartAt = Callable[[TopicPartition, int, int], int]


async def partitions_of(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of `topics` (named on the cluster: `KafkaSettings.topic`) as the broker
    knows them now (a missing topic has none)."""
    await consumer.topics()  # refreshes the metadata, so the topics' partitions are known
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


def from_beginning(tp: TopicPartition, first: int, end: int) -> int:
    return first


async def read_to_end(
    kafka: KafkaSettings,
    topics: Sequence[str],
    start_at: StartAt = from_beginning,
    timeout_s: float = 60.0,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Batches of messages of the set's `topics` (logical names) from `start_at` to (at
    least) the end each partition had when reading began.

    A partition is done once the reader is at or past the end the broker reported and a fetch
    brings nothing more: some brokers report an end below the last batch (Tansu: the start of
    a multi-record batch plus one), so the reported end alone would drop the newest messages.
    Topics that do not exist yet are skipped. Raises TimeoutError when the end is not reached
    within `timeout_s` of no progress.
    """
    consumer = AIOKafkaConsumer(
        **admin_client_options(kafka), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = await partitions_of(consumer, [kafka.topic(t) for t in topics])
        if not assigned:
            return
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        firsts = await consumer.beginning_offsets(assigned)
        remaining: dict[TopicPartition, int] = {}
        for tp in assigned:
            consumer.seek(tp, max(firsts[tp], min(start_at(tp, firsts[tp], ends[tp]), ends[tp])))
            remaining[tp] = ends[tp]
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"could not read {', '.join(sorted({tp.topic for tp in remaining}))} to "
                    f"its end: no progress for {timeout_s:.0f} s"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            fetched = set()
            for tp, messages in batch.items():
                if tp in remaining and messages:
                    fetched.add(tp)
                    deadline = time.monotonic() + timeout_s
                    yield messages
            for tp in list(remaining):
                if tp not in fetched and await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        await consumer.stop()
