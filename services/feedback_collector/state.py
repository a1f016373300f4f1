"""The collector's own state, kept on a small compacted Kafka topic: nothing on local disk.

Two kinds of entries, each the latest value of its key (the topic is compacted, so it holds one
message per key however long the collector runs):

- `progress/<dataset id>` -> `{"through": <time>, ...}`: every response of that Argilla dataset
  written before `through` has been emitted. It is written only after a reconciliation pass
  has read the dataset's last page and every event of the pass was acknowledged by the
  broker, so a crash at any point leaves the previous value, and the next pass starts from it
  (minus the overlap) again. Webhooks never move it: a fresh response that a webhook brought
  out says nothing about the older ones a pass has not reached yet.
- `completed/<dataset id>/<record id>` -> `{"responses": <digest>, "outcome": ...}`: the set of
  responses a `CompletedRecord` was last announced with (or dead-lettered for). A record is
  announced again only when its set of responses changes (see `emitter.response_set`).

Why a topic of its own rather than the newest `responded_at` on `feedback.responses` (the
earlier design): webhook events interleave there, and retention can empty it; this topic has
one writer, says exactly what was finished, and compaction keeps its latest values for good.
At startup the collector reads it from the beginning (one small message per dataset and per
completed record). A missing or emptied topic means "nothing done yet": every dataset is read
again from the start, a page at a time, and the completions are announced again once.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from pydantic import BaseModel, ValidationError

from shared.broker import admin_client_options
from shared.settings import KafkaSettings
from shared.topic_reader import read_to_end

log = logging.getLogger("loopline.feedback_collector")

STATE_TOPIC = "feedback.collector.state"
PROGRESS, COMPLETED = "progress", "completed"

# (topic, key, value) -> awaited until the broker acknowledged the message.
Write = Callable[[str, bytes, bytes], Awaitable[None]]


class Progress(BaseModel):
    through: datetime
    workspace: str = ""
    dataset: str = ""


class Announced(BaseModel):
    responses: str  # the digest of the set of responses
    outcome: str = "sent"  # or "dead-lettered"


@dataclass(frozen=True)
class StateMessage:
    key: bytes | None
    value: bytes | None


ModelT = TypeVar("ModelT", bound=BaseModel)


def _short(key: str) -> int:
    """A 64-bit hash of a completion's key. Two keys that collide share one slot: the later
    announcement replaces the earlier one, so at worst a record is announced once more (the
    digests, which cover the dataset and record ids, differ)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _apply(table: dict[str, ModelT], key: str, value: bytes | None, model: type[ModelT]) -> None:
    if value is None:
        table.pop(key, None)  # a tombstone
    else:
        table[key] = model.model_validate_json(value)


class CollectorState:
    """Progress per dataset and the completions announced, in memory and on `topic` (the
    state topic as named on the cluster: `kafka.topic(STATE_TOPIC)`)."""

    def __init__(self, write: Write, topic: str = STATE_TOPIC) -> None:
        self._write = write
        self.topic = topic
        self._progress: dict[str, Progress] = {}
        # A compact memory of the announcements (about 200 bytes per completed record): a
        # 64-bit hash of the key -> (digest of the responses, outcome).
        self._announced: dict[int, tuple[str, str]] = {}

    # Reading back.
    def load(self, messages: Iterable[StateMessage]) -> None:
        """Apply the topic's messages in order: the last value of each key wins; a tombstone
        (no value) forgets the key; a message this version does not understand is skipped."""
        for message in messages:
            key = (message.key or b"").decode(errors="replace")
            kind, _, rest = key.partition("/")
            try:
                if kind == PROGRESS:
                    _apply(self._progress, rest, message.value, Progress)
                elif kind == COMPLETED:
                    self._apply_announced(rest, message.value)
                else:
                    log.warning("state: skipping a message with an unknown key %r", key[:80])
            except ValidationError as exc:
                log.warning("state: skipping a malformed value of %r: %s", key[:80], exc)
        log.info(
            "state: progress of %d dataset(s), %d completed record(s) announced",
            len(self._progress),
            len(self._announced),
        )

    def _apply_announced(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._announced.pop(_short(key), None)  # a tombstone
        else:
            entry = Announced.model_validate_json(value)
            self._announced[_short(key)] = (entry.responses, sys.intern(entry.outcome))

    # Progress per dataset.
    def progress(self, dataset_id: str) -> datetime | None:
        found = self._progress.get(dataset_id)
        return found.through if found is not None else None

    async def save_progress(
        self, dataset_id: str, through: datetime, workspace: str = "", dataset: str = ""
    ) -> None:
        entry = Progress(through=through, workspace=workspace, dataset=dataset)
        await self._write(
            self.topic, f"{PROGRESS}/{dataset_id}".encode(), entry.model_dump_json().encode()
        )
        self._progress[dataset_id] = entry

    # Completions announced.
    def announced(self, dataset_id: str, record_id: str) -> Announced | None:
        """What the record was last announced (or dead-lettered) with, if it was."""
        found = self._announced.get(_short(f"{dataset_id}/{record_id}"))
        return Announced(responses=found[0], outcome=found[1]) if found is not None else None

    async def save_announced(
        self, dataset_id: str, record_id: str, responses: str, outcome: str
    ) -> None:
        key = f"{dataset_id}/{record_id}"
        entry = Announced(responses=responses, outcome=outcome)
        await self._write(
            self.topic, f"{COMPLETED}/{key}".encode(), entry.model_dump_json().encode()
        )
        self._announced[_short(key)] = (responses, sys.intern(outcome))


async def create_state_topic(kafka: KafkaSettings, topic: str = STATE_TOPIC) -> bool:
    """Create the flow set's compacted state topic (`topic`, logical: `kafka.topic` names it on
    the cluster; one partition: one writer, order kept) unless it exists; True when created."""
    topic = kafka.topic(topic)
    admin = AIOKafkaAdminClient(**admin_client_options(kafka))
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            return False
        new = NewTopic(
            name=topic,
            num_partitions=1,
            replication_factor=kafka.topic_replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
        response = await admin.create_topics([new])
        for entry in response.topic_errors:
            code = entry[1]
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"could not create {topic}: error {code} {entry[2:]}")
        log.info("created the compacted topic %s", topic)
        return True
    finally:
        await admin.close()


async def read_state(kafka: KafkaSettings, topic: str = STATE_TOPIC) -> list[StateMessage]:
    """Every message of the flow set's state topic (`topic`, logical), oldest first (small: one
    per key after compaction)."""
    found: list[StateMessage] = []
    async for messages in read_to_end(kafka, [topic]):
        found.extend(StateMessage(m.key, m.value) for m in messages)
    return found
