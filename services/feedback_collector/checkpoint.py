"""The reconciliation checkpoint, recovered from Kafka: no local state.

The checkpoint is the newest `responded_at` (Argilla's own `updated_at` of a response) already
on `feedback.responses`. At startup the collector reads the last few messages of every
partition of that topic (`settings.feedback.checkpoint_tail_messages`) and takes the newest
`responded_at` among them; an empty topic gives the Unix epoch, i.e. everything is emitted once.

Reconciliation emits the responses of each pass in `responded_at` order, so the newest one on
the topic means every older one of that pass was sent before. Webhook deliveries interleave,
which is why every pass also looks `reconcile_overlap_s` behind the checkpoint again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from shared.broker import admin_client_options
from shared.events import FEEDBACK_RESPONSES, AnnotatorResponse
from shared.settings import KafkaSettings

log = logging.getLogger("loopline.feedback_collector")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def read_checkpoint(
    kafka: KafkaSettings,
    topic: str = FEEDBACK_RESPONSES,
    tail_messages: int = 50,
    timeout_s: float = 30.0,
) -> datetime:
    """The newest `responded_at` among the last `tail_messages` of each partition of `topic`."""
    consumer = AIOKafkaConsumer(
        **admin_client_options(kafka), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    newest = EPOCH
    try:
        await consumer.topics()  # refreshes the metadata, so the topic's partitions are known
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            log.info("checkpoint: topic %s has no partitions yet; starting at the epoch", topic)
            return newest
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.beginning_offsets(assigned)
        remaining: dict[TopicPartition, int] = {}
        for tp in assigned:
            end, start = ends[tp], starts[tp]
            if end > start:
                consumer.seek(tp, max(start, end - tail_messages))
                remaining[tp] = end
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, messages in batch.items():
                for message in messages:
                    try:
                        event = AnnotatorResponse.model_validate_json(message.value or b"")
                        newest = max(newest, event.responded_at)
                    except ValidationError:
                        log.warning("checkpoint: skipping a malformed message at %s", tp)
                if messages and messages[-1].offset + 1 >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
        if remaining:
            raise TimeoutError(
                f"checkpoint: could not read the tail of {topic} within {timeout_s:.0f} s"
            )
    finally:
        await consumer.stop()
    log.info("checkpoint: newest response on %s is %s", topic, newest.isoformat())
    return newest
