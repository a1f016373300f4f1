"""Where a flow's records are: the stages, and counting records per stage from the topics.

A record reached a stage when a message about it is on the topic that stage writes (by record
id): ingested, generated, judged, in Argilla, answered, completed. A stage a flow leaves out is
skipped (`stages_of`), and its records land on a later stage's topic (`stage_topics`). A record
on a dead-letter topic failed at the stage that reads the topic, with the dead letter's reason.
The topics are the flow set's (`KafkaSettings.topic`); stages are told apart by the topics'
logical names.

`StageCounter` counts the records of many flows from messages; `TopicFollower` reads the set's
topics from a point in time (or their end) and keeps up with them. `loopline status`, `loopline
trace` and the local stack's demo (`devstack.stage_watch`) use both.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.broker import admin_client_options
from shared.dead_letters import H_ERROR
from shared.events import (
    DATASETS_EXPORTED,
    DLQ_SUFFIX,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INCOMING,
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
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)
# Stages after which people (or bots) answer in Argilla, in their own time.
PEOPLE_STAGES = frozenset({"in Argilla", "answered"})
# What each service's consumer group reads (logical names): `ServiceSpec.consumes` of each
# service (a unit test keeps them equal). The feedback collector reads Argilla, no topic.
SERVICE_INPUTS: dict[str, tuple[str, ...]] = {
    "ingester": (RECORDS_INCOMING,),
    "generator": (RECORDS_INGESTED,),
    "judge": (RECORDS_GENERATED,),
    "argilla-publisher": (RECORDS_JUDGED,),
    "feedback-collector": (),
    "exporter": (RECORDS_COMPLETED, RECORDS_JUDGED),
}


def stage_key(stage: str) -> str:
    """A stage's name as a JSON key: `in Argilla` -> `in_argilla`."""
    return stage.lower().replace(" ", "_")


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
    return [name for name in STAGE_NAMES if used[name]]


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


def counted_topics() -> list[str]:
    """The topics `StageCounter` reads (logical names): the stages', their dead-letter topics,
    and `datasets.exported`."""
    stage_topics_ = [topic for _, topic in STAGES]
    return [*stage_topics_, *(t + DLQ_SUFFIX for t in stage_topics_), DATASETS_EXPORTED]


@dataclass
class StageCount:
    records: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # record id -> reason
    last_change: float = field(default_factory=time.monotonic)
    reached_at: dict[str, float] = field(default_factory=dict)  # record id -> Unix time (first)


@dataclass(frozen=True)
class StagePosition:
    """Where a flow's records are at one stage (`FlowProgress.positions`)."""

    reached: int  # records seen at the stage
    at: int  # records whose furthest stage is this one, not finished
    stuck: int  # of those, how many reached it longer ago than the bound
    failed: int  # records dead-lettered on their way into this stage (and no further since)


@dataclass
class FlowProgress:
    """What has been seen of one flow's records."""

    flow_name: str
    flow: Flow
    stages: dict[str, StageCount] = field(default_factory=dict)
    auto_accepted: set[str] = field(default_factory=set)
    exported: dict[str, tuple[int, int]] = field(default_factory=dict)  # format -> (v, rows)
    export_paths: dict[str, str] = field(default_factory=dict)
    exported_at: dict[str, float] = field(default_factory=dict)  # format -> Unix time

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

    def positions(self, now: float, stuck_after_s: float) -> dict[str, StagePosition]:
        """Per stage of the flow: records that reached it, that are at it (it is the furthest
        they reached and they are not finished), how many of those have been there longer than
        `stuck_after_s` (by the time of the message that brought them: Unix `now`), and how
        many failed on their way into it. A record dead-lettered and then replayed counts where
        it got to since."""
        names = list(self.stages)
        furthest: dict[str, int] = {}
        for index, name in enumerate(names):
            for record_id in self.stages[name].records:
                furthest[record_id] = index
        failed_at: dict[str, int] = {}
        for index, name in enumerate(names):
            for record_id in self.stages[name].failed:
                if furthest.get(record_id, -1) < index:
                    failed_at[record_id] = index
        done = set(self.auto_accepted) | set(failed_at)
        if "completed" in self.stages:
            done |= self.stages["completed"].records
        at = [0] * len(names)
        stuck = [0] * len(names)
        for record_id, index in furthest.items():
            if record_id in done:
                continue
            at[index] += 1
            reached = self.stages[names[index]].reached_at.get(record_id, now)
            if now - reached > stuck_after_s:
                stuck[index] += 1
        failed = [0] * len(names)
        for index in failed_at.values():
            failed[index] += 1
        return {
            name: StagePosition(len(self.stages[name].records), at[i], stuck[i], failed[i])
            for i, name in enumerate(names)
        }


Message: TypeAlias = ConsumerRecord[bytes, bytes]


class StageCounter:
    """Counts the records of `flows` per stage from the messages it is shown (`seen`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        flows: Mapping[str, Flow],
        record_ids: set[str] | None = None,
        count_unknown: bool = False,
    ) -> None:
        """Only `record_ids` when given (a run's own records). With `count_unknown`, records
        of flows not in `flows` are counted per flow name (`unknown`)."""
        self.kafka = kafka
        self.record_ids = record_ids
        self.progress = {name: FlowProgress(name, flow) for name, flow in flows.items()}
        self._topic_stages = {name: stage_topics(flow) for name, flow in flows.items()}
        self._datasets = {
            (flow.publish.dataset or name): name
            for name, flow in flows.items()
            if flow.publish is not None
        }
        self._flow_of: dict[str, str] = {}  # record id -> its flow, as its messages said
        self.unknown: dict[str, set[str]] | None = {} if count_unknown else None

    def seen(self, message: Message) -> None:
        """Count one message of a counted topic (`counted_topics`); others are ignored."""
        topic = self.kafka.logical_topic(message.topic)
        try:
            body = json.loads(message.value or b"{}")
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if topic == DATASETS_EXPORTED:
            self._exported(body, message.timestamp)
            return
        dead = topic.endswith(DLQ_SUFFIX)
        stage_topic = topic.removesuffix(DLQ_SUFFIX)
        record_id, flow = _identify(stage_topic, body)
        if record_id is None:
            return
        if self.record_ids is not None and record_id not in self.record_ids:
            return
        flow = flow or self._flow_of.get(record_id) or self._dataset_flow(body)
        if flow is None:
            return  # an answer to a record of a flow not counted
        self._flow_of.setdefault(record_id, flow)
        progress = self.progress.get(flow)
        if progress is None:
            if self.unknown is not None:
                self.unknown.setdefault(flow, set()).add(record_id)
            return
        stages = self._topic_stages[flow].get(stage_topic)
        if not stages:
            return  # a topic this flow's records do not pass
        if dead:
            # The message failed at the stage that reads this topic: the next one.
            names = list(progress.stages)
            stage = names[min(names.index(stages[-1]) + 1, len(names) - 1)]
            headers = dict(message.headers or ())
            reason = headers.get(H_ERROR, b"").decode(errors="replace") or "dead-lettered"
            progress.stages[stage].failed[record_id] = reason
            return
        for stage in stages:
            counted = progress.stages[stage]
            if record_id not in counted.records:
                counted.records.add(record_id)
                counted.last_change = time.monotonic()
                counted.reached_at[record_id] = message.timestamp / 1000
        if stage_topic == RECORDS_JUDGED and auto_accepted(progress.flow, body):
            progress.auto_accepted.add(record_id)

    def _dataset_flow(self, body: dict[str, Any]) -> str | None:
        """The flow of an annotator's answer, by the Argilla dataset it is in (`name` or a
        version of it, `name-v2`)."""
        dataset = body.get("dataset")
        if not isinstance(dataset, str):
            return None
        base = re.fullmatch(r"(.+)-v\d+", dataset)
        return self._datasets.get(dataset) or (self._datasets.get(base.group(1)) if base else None)

    def _exported(self, body: dict[str, Any], timestamp_ms: int) -> None:
        try:
            event = DatasetExported.model_validate(body)
        except ValueError:
            return
        progress = self.progress.get(event.flow)
        if progress is not None:
            progress.exported[event.format] = (event.version, event.rows)
            progress.export_paths[event.format] = event.location
            progress.exported_at[event.format] = timestamp_ms / 1000


def _identify(topic: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
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


def auto_accepted(flow: Flow, body: dict[str, Any]) -> bool:
    """Whether a judged record of `flow` skips people: the flow has none, or its
    `publish.when` lets the record through (`shared.review`)."""
    publish = flow.publish
    if publish is None:
        return True
    if publish.when is None:
        return False
    try:
        record = Record.model_validate(body)
    except ValueError:
        return False
    return not review(record, publish.when).to_people


# Where a partition starts: its first offset, its end offset -> the offset to read from
StartAt = Callable[[TopicPartition, int, int], int]


class TopicFollower:
    """Reads the set's `topics` (logical names) from `since` (Unix seconds; None: from their
    current end) and, at each `catch_up`, on to their end. Topics that appear later are read
    from `since` too. Without a consumer group: nothing is committed.

    `since` picks the starting offsets by the broker's time index (`offsets_for_times`);
    messages older than `since` that still come (a broker whose index is by append time) are
    skipped, so the window holds whatever the broker."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], since: float | None) -> None:
        self.kafka = kafka
        self.topics = [kafka.topic(t) for t in topics]
        self.since_ms = None if since is None else int(since * 1000)
        self.read = 0  # messages fetched so far (older ones skipped included)
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **admin_client_options(self.kafka), group_id=None, enable_auto_commit=False
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _starts(self, new: list[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(new)
        if self.since_ms is None:
            return dict(ends)
        found = await self._consumer.offsets_for_times(dict.fromkeys(new, self.since_ms))
        starts: dict[TopicPartition, int] = {}
        for tp in new:
            hit = found.get(tp)
            # None (or, on some brokers, a timestamp of -1): nothing at or after `since`.
            nothing = hit is None or hit.offset < 0 or getattr(hit, "timestamp", 0) < 0
            starts[tp] = ends[tp] if nothing else min(hit.offset, ends[tp])
        return starts

    async def catch_up(self, handle: Callable[[Message], None], timeout_s: float = 60.0) -> int:
        """Hand every message from where the last call stopped (the first: from `since`) to
        the end each partition has now to `handle`, in order per partition; the number of
        messages handed. Raises TimeoutError after `timeout_s` without progress."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("TopicFollower.catch_up before start()")
        partitions = await partitions_of(consumer, self.topics)
        new = [tp for tp in partitions if tp not in self._positions]
        if new:
            self._positions.update(await self._starts(new))
        if not partitions:
            return 0
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, self._positions[tp])
        ends = await consumer.end_offsets(partitions)
        remaining = set(partitions)
        handed = 0
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                late = ", ".join(sorted({tp.topic for tp in remaining}))
                raise TimeoutError(
                    f"could not read {late} to its end: no progress for {timeout_s:.0f} s"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=300)
            fetched: set[TopicPartition] = set()
            for tp, messages in batch.items():
                if not messages:
                    continue
                fetched.add(tp)
                deadline = time.monotonic() + timeout_s
                self.read += len(messages)
                for message in messages:
                    if self.since_ms is None or message.timestamp >= self.since_ms:
                        handle(message)
                        handed += 1
            # Done once at or past the reported end and a fetch brings nothing more: some
            # brokers report an end below the last batch (Tansu).
            for tp in list(remaining):
                if tp not in fetched and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        for tp in partitions:
            self._positions[tp] = await consumer.position(tp)
        return handed

    async def poll(self, handle: Callable[[Message], None], timeout_ms: int = 500) -> int:
        """Hand what one fetch brings of the partitions read so far (after `catch_up`) to
        `handle`; the number of messages handed."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("TopicFollower.poll before start()")
        handed = 0
        batch = await consumer.getmany(timeout_ms=timeout_ms)
        for tp, messages in batch.items():
            self.read += len(messages)
            for message in messages:
                if self.since_ms is None or message.timestamp >= self.since_ms:
                    handle(message)
                    handed += 1
            if messages:
                self._positions[tp] = messages[-1].offset + 1
        return handed
