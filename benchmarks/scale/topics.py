"""The scale benchmark's topics: the judge's input pre-filled, its output watched.

`prefill` writes `count` valid records of the benchmark's flow (an instruction and two
candidate responses each, as the generator leaves them) to the run's `records.generated`,
keyed by record id as every stage keys them. `JudgedWatcher` reads the run's `records.judged`
(and the judge's dead-letter topic, which must stay empty) from the start, keeping each
record's first judged time: the message's own timestamp, set by the replica that judged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.broker import admin_client_options, ensure_topics, producer_options
from shared.events import (
    RECORDS_GENERATED,
    RECORDS_JUDGED,
    CandidateResponse,
    Record,
    dead_letter_topic,
)
from shared.settings import KafkaSettings

FLOW = "scale"


def flow_file(max_in_flight: int | None) -> str:
    """The flow: the multi-aspect judge on the default endpoint (LOOPLINE_LLM__BASE_URL), with
    the client's own in-flight limit per replica unless `max_in_flight` is given."""
    llm = f", llm: {{plugin: openai, options: {{max_in_flight: {max_in_flight}}}}}"
    return (
        f"flows:\n  {FLOW}:\n    description: the scale benchmark's judge\n"
        f"    judge: {{plugin: multi-aspect, max_tokens: 900{llm if max_in_flight else ''}}}\n"
    )


def record(run: str, i: int) -> Record:
    return Record(
        record_id=f"{run}-{i:05d}",
        flow=FLOW,
        instruction=f"Write a Python function that returns the {i}th triangular number, with a "
        "docstring and one example.",
        responses=[
            CandidateResponse(
                text=f"def triangular(n):\n    return n * (n + 1) // 2  # {model}",
                model=model,
            )
            for model in ("model-a", "model-b")
        ],
        metadata={"bench": "scale", "n": i},
    )


async def prefill(kafka: KafkaSettings, run: str, count: int) -> Counter[int]:
    """The run's topics created, `count` records on `records.generated`; how many records
    each partition holds."""
    await ensure_topics(
        kafka, [RECORDS_GENERATED, dead_letter_topic(RECORDS_GENERATED), RECORDS_JUDGED]
    )
    producer = AIOKafkaProducer(**producer_options(kafka), linger_ms=10)
    await producer.start()
    try:
        sends = [
            await producer.send(
                kafka.topic(RECORDS_GENERATED),
                record(run, i).model_dump_json().encode(),
                key=f"{run}-{i:05d}".encode(),
            )
            for i in range(count)
        ]
        written = await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return Counter(meta.partition for meta in written)


class JudgedWatcher:
    """Each record's first time on the run's `records.judged` (epoch seconds)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.judged: dict[str, float] = {}
        self.partition: dict[str, int] = {}
        self.dead_letters = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            self.kafka.topic(RECORDS_JUDGED),
            self.kafka.topic(dead_letter_topic(RECORDS_GENERATED)),
            **admin_client_options(self.kafka),
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        judged = self.kafka.topic(RECORDS_JUDGED)
        try:
            while True:
                for part, messages in (await consumer.getmany(timeout_ms=100)).items():
                    for message in messages:
                        if part.topic != judged:
                            self.dead_letters += 1
                            continue
                        key = (message.key or b"").decode()
                        self.judged.setdefault(key, message.timestamp / 1000)
                        self.partition.setdefault(key, message.partition)
        finally:
            await consumer.stop()

    def left_at(self, at: float, written: Counter[int]) -> dict[int, int]:
        """Per partition, how many of the `written` records were not judged yet at `at`
        (a record is judged on the partition it was read from: same key, same count)."""
        done = Counter(p for key, p in self.partition.items() if self.judged[key] <= at)
        return {p: written[p] - done[p] for p in sorted(written)}

    def stamps(self) -> list[float]:
        return sorted(self.judged.values())

    async def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.judged) < count:
            if self.dead_letters:
                raise RuntimeError(f"{self.dead_letters} record(s) went to the dead-letter topic")
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.judged)} of {count} judged in {timeout_s} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
