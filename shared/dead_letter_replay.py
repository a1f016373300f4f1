"""Reading the dead-letter topics back, and replaying dead letters to the topics they came from.

A replay sends a dead letter's original bytes and key to its source topic, with a header naming
the dead letter it replays, then notes the dead letter (`topic/partition/offset`) on
`dlq.replays`. A dead letter noted there is never replayed again, so replaying twice (or two
operators at once, after the first finished) does not duplicate anything downstream.

Only the flow set's topics are read and written (`KafkaSettings.topic`): its dead-letter topics,
its `dlq.replays`. A dead letter names the topic it came from as it is on the cluster, so it
goes back to that very topic.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.broker import admin_client_options, ensure_topics, producer_options
from shared.dead_letters import H_REPLAYABLE, DeadLetter
from shared.events import DLQ_SUFFIX
from shared.settings import KafkaSettings
from shared.topic_reader import read_to_end

REPLAYS_TOPIC = "dlq.replays"
H_REPLAY_OF = "loopline-replay-of"


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter where it is stored: its topic, partition, offset and time."""

    letter: DeadLetter
    topic: str
    partition: int
    offset: int
    at: datetime
    key: bytes | None
    replayable: bool = True  # False: the body refers to the message, it is not the message

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def record_id(self) -> str | None:
        """The record id in the dead letter's body, when it is a Loopline event."""
        try:
            body = json.loads(self.letter.body)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        nested = body.get("record")
        found = body.get("record_id") or (
            nested.get("record_id") if isinstance(nested, dict) else None
        )
        return found if isinstance(found, str) else None

    @classmethod
    def from_message(cls, message: ConsumerRecord[bytes, bytes]) -> StoredDeadLetter | None:
        headers = {name: value.decode(errors="replace") for name, value in message.headers or ()}
        try:
            letter = DeadLetter.from_headers(message.value or b"", headers)
        except (KeyError, ValueError):
            return None  # not written by Loopline's dead letters
        return cls(
            letter=letter,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            at=datetime.fromtimestamp(message.timestamp / 1000, tz=UTC),
            key=message.key,
            replayable=headers.get(H_REPLAYABLE, "true") != "false",
        )


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters to show or replay; every given condition must hold."""

    topics: frozenset[str] = frozenset()  # dead-letter topics (`x.dlq`) or their sources (`x`)
    error_types: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    record_ids: frozenset[str] = frozenset()

    def matches(self, stored: StoredDeadLetter) -> bool:
        if self.topics and not {stored.topic, stored.letter.source_topic} & self.topics:
            return False
        if self.error_types and stored.letter.error_type not in self.error_types:
            return False
        if self.since is not None and stored.at < self.since:
            return False
        if self.until is not None and stored.at > self.until:
            return False
        return not self.record_ids or stored.record_id in self.record_ids


async def dead_letter_topics(kafka: KafkaSettings) -> list[str]:
    """The flow set's dead-letter topics, by their logical names (`records.judged.dlq`)."""
    consumer = AIOKafkaConsumer(**admin_client_options(kafka), group_id=None)
    await consumer.start()
    try:
        found = await consumer.topics()
    finally:
        await consumer.stop()
    return sorted(kafka.logical_topic(t) for t in found if kafka.owns(t) and t.endswith(DLQ_SUFFIX))


def on_cluster(kafka: KafkaSettings, wanted: LetterFilter) -> LetterFilter:
    """`wanted` with its topics named as on the cluster, as dead letters name them: a logical
    name (`records.judged`) and the set's own (`team-a.records.judged`) both mean the set's."""
    named = frozenset(kafka.topic(kafka.logical_topic(t)) for t in wanted.topics)
    return replace(wanted, topics=named)


async def read_dead_letters(
    kafka: KafkaSettings, wanted: LetterFilter = LetterFilter()
) -> AsyncIterator[StoredDeadLetter]:
    """Every dead letter of the set stored now that `wanted` matches, topic by topic."""
    wanted = on_cluster(kafka, wanted)
    topics = await dead_letter_topics(kafka)
    if wanted.topics:
        topics = [
            t
            for t in topics
            if {kafka.topic(t), kafka.topic(t.removesuffix(DLQ_SUFFIX))} & wanted.topics
        ]
    async for batch in read_to_end(kafka, topics):
        for message in batch:
            stored = StoredDeadLetter.from_message(message)
            if stored is not None and wanted.matches(stored):
                yield stored


@dataclass
class Tally:
    """Dead letters counted by (dead-letter topic, error type), with their time span."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    first: dict[tuple[str, str], datetime] = field(default_factory=dict)
    last: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def add(self, stored: StoredDeadLetter) -> None:
        key = (stored.topic, stored.letter.error_type)
        self.counts[key] += 1
        self.first[key] = min(self.first.get(key, stored.at), stored.at)
        self.last[key] = max(self.last.get(key, stored.at), stored.at)


async def replayed_coordinates(kafka: KafkaSettings) -> set[str]:
    """The set's dead letters already replayed (their `topic/partition/offset`)."""
    done: set[str] = set()
    async for batch in read_to_end(kafka, [REPLAYS_TOPIC]):
        done.update(m.key.decode() for m in batch if m.key is not None)
    return done


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[StoredDeadLetter]
    already: list[StoredDeadLetter]  # replayed before: left alone
    not_replayable: list[StoredDeadLetter] = field(default_factory=list)  # references only


async def replay(
    kafka: KafkaSettings, letters: Iterable[StoredDeadLetter], apply: bool
) -> ReplayResult:
    """Replay `letters` not replayed before to their source topics (only counted unless
    `apply`)."""
    done = await replayed_coordinates(kafka)
    todo: list[StoredDeadLetter] = []
    already: list[StoredDeadLetter] = []
    references: list[StoredDeadLetter] = []
    for stored in letters:
        if not stored.replayable:
            references.append(stored)
        else:
            (already if stored.coordinates in done else todo).append(stored)
    if not apply or not todo:
        return ReplayResult(todo, already, references)
    await ensure_topics(kafka, [REPLAYS_TOPIC])
    producer = AIOKafkaProducer(**producer_options(kafka))
    await producer.start()
    try:
        for stored in todo:
            await producer.send_and_wait(
                stored.letter.source_topic,
                stored.letter.body,
                key=stored.key,
                headers=[(H_REPLAY_OF, stored.coordinates.encode())],
            )
            await producer.send_and_wait(
                kafka.topic(REPLAYS_TOPIC),
                stored.letter.error.encode(),
                key=stored.coordinates.encode(),
            )
    finally:
        await producer.stop()
    return ReplayResult(todo, already, references)


def sources(letters: Sequence[StoredDeadLetter]) -> Counter[str]:
    return Counter(stored.letter.source_topic for stored in letters)
