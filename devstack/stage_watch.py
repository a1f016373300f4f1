"""Watching one flow's records move through the stages, from the topics (`loopline demo`).

A consumer without a group reads every stage's topic, and its dead-letter topic, from the end
it had when watching began, and counts the flow's records per stage by record id: ingested,
generated, judged, in Argilla, answered, completed, and the versions exported. A record that
went to a dead-letter topic is counted as failed at that stage, with the reason. The topics are
the flow set's (`KafkaSettings.topic`); stages are told apart by the topics' logical names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.broker import admin_client_options
from shared.dead_letters import H_ERROR
from shared.events import (
    DATASETS_EXPORTED,
    DLQ_SUFFIX,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    DatasetExported,
    Record,
)
from shared.flows import Flow, next_topic
from shared.review import review
from shared.settings import KafkaSettings
from shared.topic_reader import partitions_of

# The stages in order, each with the topic whose messages say a record reached it.
STAGES: tuple[tuple[str, str], ...] = (
    ("ingested", RECORDS_INGESTED),
    ("generated", RECORDS_GENERATED),
    ("judged", RECORDS_JUDGED),
    ("in Argilla", RECORDS_PUBLISHED),
    ("answered", FEEDBACK_RESPONSES),
    ("completed", RECORDS_COMPLETED),
)


def stage_topics(flow: Flow) -> dict[str, list[str]]:
    """Per topic, the stages of the flow a record on it has reached, in order. A stage the flow
    skips passes its records straight to a later stage's topic (`next_topic`): a judge-only
    flow's imported records land on `records.generated`, and a flow with neither generation
    nor judge sends them to `records.judged`, so those topics count them as ingested too."""
    used = stages_of(flow)
    topics: dict[str, list[str]] = {}
    for name, topic in STAGES:
        if name in used:
            topics.setdefault(topic, []).append(name)
    landing = {"ingested": next_topic(flow, "ingest"), "generated": next_topic(flow, "generate")}
    for name, topic in landing.items():
        if name in used and name not in topics.setdefault(topic, []):
            topics[topic].append(name)
            topics[topic].sort(key=used.index)
    return topics


def stages_of(flow: Flow) -> list[str]:
    """The stages a flow's records pass through (a stage the flow leaves out is skipped)."""
    used = {
        "ingested": True,
        "generated": bool(flow.generate),
        "judged": True,  # records with no judge wait on records.judged too
        "in Argilla": flow.publish is not None,
        "answered": flow.publish is not None,
        "completed": flow.publish is not None,
    }
    return [name for name, _ in STAGES if used[name]]


@dataclass
class StageCount:
    records: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # record id -> reason
    last_change: float = field(default_factory=time.monotonic)


@dataclass
class FlowProgress:
    """What has been seen of one flow's records since watching began."""

    flow_name: str
    flow: Flow
    stages: dict[str, StageCount] = field(default_factory=dict)
    auto_accepted: set[str] = field(default_factory=set)
    exported: dict[str, tuple[int, int]] = field(default_factory=dict)  # format -> (v, rows)
    export_paths: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stages = {name: StageCount() for name in stages_of(self.flow)}

    def count(self, stage: str) -> int:
        return len(self.stages[stage].records)

    def failed(self) -> dict[str, str]:
        """Every failed record id with the stage and reason it failed with."""
        return {
            record_id: f"{stage}: {reason}"
            for stage, counted in self.stages.items()
            for record_id, reason in counted.failed.items()
        }

    def finished(self) -> set[str]:
        """Records at the end of their road: completed by people, auto-accepted, or failed."""
        done = set(self.auto_accepted) | set(self.failed())
        if "completed" in self.stages:
            done |= self.stages["completed"].records
        return done

    def stalled(self, after_s: float) -> str | None:
        """The first stage that has had nothing new for `after_s` while the one before it has
        records it has not seen (None when every stage keeps up)."""
        names = list(self.stages)
        now = time.monotonic()
        for before, stage in pairwise(names):
            upstream = self.stages[before].records - set(self.stages[before].failed)
            waiting = upstream - self.stages[stage].records - self.finished()
            if stage == "answered":
                continue  # people (or bots) take the time they take
            if waiting and now - self.stages[stage].last_change > after_s:
                return stage
        return None

    def last_error(self, stage: str) -> str | None:
        failures = list(self.stages[stage].failed.values())
        return failures[-1] if failures else None


class StageWatcher:
    """Counts a flow's records per stage while it runs (`start`, then read `progress`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        flow_name: str,
        flow: Flow,
        record_ids: set[str] | None = None,
    ) -> None:
        """Counts the flow's records; only `record_ids` when given (a run's own records, not
        an earlier run's that are redelivered or still on their way)."""
        self.kafka = kafka
        self.record_ids = record_ids
        self.progress = FlowProgress(flow_name, flow)
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._topic_stages = stage_topics(flow)

    async def start(self) -> None:
        """Begin at the current end of every topic: only what happens from now on counts."""
        consumer = AIOKafkaConsumer(
            **admin_client_options(self.kafka), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        topics = [*self._topic_stages, *(t + DLQ_SUFFIX for t in self._topic_stages)]
        topics.append(DATASETS_EXPORTED)
        assigned = await partitions_of(consumer, [self.kafka.topic(t) for t in topics])
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            consumer.seek(tp, ends[tp])
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    self.seen(message)

    def seen(self, message: ConsumerRecord[bytes, bytes]) -> None:
        """Count one message (public for tests)."""
        topic = self.kafka.logical_topic(message.topic)
        try:
            body = json.loads(message.value or b"{}")
        except ValueError:
            return
        if topic == DATASETS_EXPORTED:
            self._exported(body)
            return
        dead = topic.endswith(DLQ_SUFFIX)
        stage_topic = topic.removesuffix(DLQ_SUFFIX)
        record_id, flow = self._identify(stage_topic, body)
        if record_id is None or flow not in (None, self.progress.flow_name):
            return
        if self.record_ids is not None and record_id not in self.record_ids:
            return
        if flow is None and record_id not in self.progress.stages["ingested"].records:
            return  # an answer to a record of another flow
        if dead:
            # The message failed at the stage that reads this topic: the next one.
            names = list(self.progress.stages)
            index = names.index(self._topic_stages[stage_topic][-1])
            stage = names[min(index + 1, len(names) - 1)]
            headers = dict(message.headers or ())
            reason = headers.get(H_ERROR, b"").decode(errors="replace") or "dead-lettered"
            self.progress.stages[stage].failed[record_id] = reason
            return
        for stage in self._topic_stages[stage_topic]:
            counted = self.progress.stages[stage]
            if record_id not in counted.records:
                counted.records.add(record_id)
                counted.last_change = time.monotonic()
        if stage_topic == RECORDS_JUDGED:
            self._maybe_auto_accepted(record_id, body)

    def _identify(self, topic: str, body: dict[str, object]) -> tuple[str | None, str | None]:
        """(record id, flow) of a message; the flow is None where the message does not say."""
        if topic == RECORDS_COMPLETED:
            record = body.get("record")
            body = record if isinstance(record, dict) else {}
        record_id = body.get("record_id")
        flow = body.get("flow")
        return (
            record_id if isinstance(record_id, str) else None,
            flow if isinstance(flow, str) else None,
        )

    def _maybe_auto_accepted(self, record_id: str, body: dict[str, object]) -> None:
        publish = self.progress.flow.publish
        if publish is None:
            self.progress.auto_accepted.add(record_id)
            return
        if publish.when is None:
            return
        try:
            record = Record.model_validate(body)
        except ValueError:
            return
        if not review(record, publish.when).to_people:
            self.progress.auto_accepted.add(record_id)

    def _exported(self, body: dict[str, object]) -> None:
        try:
            event = DatasetExported.model_validate(body)
        except ValueError:
            return
        if event.flow == self.progress.flow_name:
            self.progress.exported[event.format] = (event.version, event.rows)
            self.progress.export_paths[event.format] = event.location


async def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True
