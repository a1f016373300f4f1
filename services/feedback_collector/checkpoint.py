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
from datetime import UTC, datetime

from aiokafka import TopicPartition
from pydantic import ValidationError

from shared.events import FEEDBACK_RESPONSES, AnnotatorResponse
from shared.settings import KafkaSettings
from shared.topic_reader import read_to_end

log = logging.getLogger("loopline.feedback_collector")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def read_checkpoint(
    kafka: KafkaSettings,
    topic: str = FEEDBACK_RESPONSES,
    tail_messages: int = 50,
    timeout_s: float = 30.0,
) -> datetime:
    """The newest `responded_at` among the last `tail_messages` of each partition of `topic`."""

    def tail(tp: TopicPartition, first: int, end: int) -> int:
        return end - tail_messages

    newest = EPOCH
    async for messages in read_to_end(kafka, [topic], tail, timeout_s):
        for message in messages:
            try:
                event = AnnotatorResponse.model_validate_json(message.value or b"")
                newest = max(newest, event.responded_at)
            except ValidationError:
                log.warning("checkpoint: skipping a malformed message at offset %d", message.offset)
    log.info("checkpoint: newest response on %s is %s", topic, newest.isoformat())
    return newest
