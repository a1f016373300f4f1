"""What a stage has already passed on, read back from its output topics: so a redelivered record
is not generated or judged again.

A record is redelivered when the instance that handled it stopped before committing its offset
(a crash, a kill, a rebalance). Its output may already be on the stage's output topic; doing the
work again would produce a different one (a new generation at temperature 0.7, a new judgment)
and downstream would see the record twice, differently. The index tails the stage's output
topics (keyed by record id) from `window_s` back, and keeps following them, so it also sees what
other instances of the stage passed on; the handler asks it before working and skips a record
it already passed on.

The index starts with the service (`start`, a step before consuming: it reads back beside the
consumer group's join, not after the first record came) or, if it could not then, at the first
question. The first question waits until the index has read the topics to their end as they
were when it started; later ones answer from what it has read so far (another instance's output
arrives within milliseconds, long before a rebalance hands its uncommitted records over).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.broker import admin_client_options
from shared.settings import KafkaSettings
from shared.topic_reader import partitions_of

log = logging.getLogger("loopline.produced")

WINDOW_S = 6 * 3600.0  # far longer than any redelivery takes
MAX_IDS = 1_000_000  # about 100 MB of record ids at most; the oldest are forgotten first


class PassedOn(ABC):
    """What a stage already passed on, by record id."""

    @abstractmethod
    async def contains(self, record_id: str) -> bool: ...

    @abstractmethod
    def add(self, record_id: str) -> None: ...

    async def start(self) -> None:
        """Begin reading back now, ahead of the first question (best effort)."""
        return None

    async def stop(self) -> None:
        return None


class PassedOnInMemory(PassedOn):
    """What this process passed on (tests; the in-memory broker has no topics to read back)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def contains(self, record_id: str) -> bool:
        return record_id in self.ids

    def add(self, record_id: str) -> None:
        self.ids.add(record_id)


class ProducedIndex(PassedOn):
    """Record ids seen on `topics` (logical names, the set's: `KafkaSettings.topic`) since
    `window_s` ago (bounded by `max_ids`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        window_s: float = WINDOW_S,
        max_ids: int = MAX_IDS,
    ) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self.window_s = window_s
        self.max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._remaining: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        """Start reading back (what follows runs in the background); Kafka's trouble now leaves
        it to the first question."""
        try:
            await self._ensure_started()
        except Exception as exc:
            log.warning(
                "reading %s back did not start (%s); it starts at the first record",
                ", ".join(self.topics),
                exc,
            )

    async def contains(self, record_id: str) -> bool:
        """Whether the stage already passed `record_id` on (starts the index on first use)."""
        await self._ensure_started()
        await self._caught_up.wait()
        return record_id in self._ids

    def add(self, record_id: str) -> None:
        """Note a record id this instance just passed on (once the index is in use: until
        then, its first question reads everything back anyway)."""
        if self._task is None:
            return
        self._remember(record_id)

    def _remember(self, record_id: str) -> None:
        self._ids[record_id] = None
        self._ids.move_to_end(record_id)
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)

    async def _ensure_started(self) -> None:
        if self._task is not None:
            return
        async with self._start_lock:
            if self._task is not None:
                return
            consumer = AIOKafkaConsumer(
                **admin_client_options(self.kafka), group_id=None, enable_auto_commit=False
            )
            await consumer.start()
            try:
                assigned = await self._seek_window(consumer)
            except BaseException:
                self._remaining.clear()
                await consumer.stop()
                raise
            if not self._remaining:
                self._caught_up.set()
            self._consumer = consumer
            self._task = asyncio.create_task(self._follow(consumer, bool(assigned)))

    async def _seek_window(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Assign the topics' partitions from `window_s` ago; note where each ends now."""
        assigned = await partitions_of(consumer, [self.kafka.topic(t) for t in self.topics])
        if assigned:
            consumer.assign(assigned)
            since_ms = int((time.time() - self.window_s) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(assigned, since_ms))
            ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                found = starts.get(tp)
                start = found.offset if found is not None else ends[tp]
                consumer.seek(tp, start)
                self._remaining[tp] = ends[tp]
        return assigned

    async def _follow(self, consumer: AIOKafkaConsumer, assigned: bool) -> None:
        if not assigned:
            return
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker's trouble: keep following once it is back
                log.warning("reading %s back failed: %s", ", ".join(self.topics), exc)
                await asyncio.sleep(1.0)
                continue
            for messages in batch.values():
                for message in messages:
                    self._read(message)
            # Caught up with a partition once at or past the end the broker reported and a
            # fetch brought nothing more (some brokers report an end below the last batch).
            for tp in list(self._remaining):
                if not batch.get(tp) and await consumer.position(tp) >= self._remaining[tp]:
                    del self._remaining[tp]
            if not self._remaining and not self._caught_up.is_set():
                self._caught_up.set()

    def _read(self, message: ConsumerRecord[bytes, bytes]) -> None:
        record_id = message.key.decode(errors="replace") if message.key else None
        if record_id is None:
            with contextlib.suppress(ValueError, AttributeError):
                record_id = json.loads(message.value or b"{}").get("record_id")
        if isinstance(record_id, str) and record_id:
            self._remember(record_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
