"""On-demand exports (`loopline export`): catch the store up with the topics, then export.

The store is brought up to date by reading `records.completed` and `records.judged` from the
offsets it has already kept (or from the start with `from_start`) to the topics' current end,
without a consumer group, so it works whether or not the exporter service is running (both
write the same idempotent rows). Each version made is pushed to the Hub when the flow says so
and emits `datasets.exported` (noted in the store, so the service does not announce it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from services.exporter.export import (
    CONSUMES,
    ExportResult,
    UnknownFlowError,
    accept,
    export_versions,
    store_path,
)
from services.exporter.hub import push_until_done
from services.exporter.store import WRITE_BATCH, ExportStore, StoredEvent
from shared.broker import admin_client_options
from shared.dead_letters import DeadLetters
from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, CompletedRecord, Record
from shared.flows import FlowsConfig, PluginRef
from shared.settings import Settings
from shared.topic_reader import read_to_end

log = logging.getLogger("loopline.exporter")


@dataclass
class CatchUp:
    """What reading the topics found: messages read; the flow's messages accepted (`kept`);
    the flow's records with no message accepted in this read (`waiting`: a judged record
    waiting for people, or one the flow's rules refuse); messages of other flows; store rows
    changed; and messages that could not be read."""

    read: int = 0
    kept: int = 0
    other_flows: int = 0
    changed: int = 0
    invalid: list[str] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)  # record ids

    @property
    def not_accepted(self) -> int:
        return len(self.waiting)


def record_of(topic: str, value: bytes) -> Record:
    """The record of a `records.completed` or `records.judged` message (`topic`: its logical
    name)."""
    if topic == RECORDS_COMPLETED:
        return CompletedRecord.model_validate_json(value).record
    return Record.model_validate_json(value)


async def catch_up(
    settings: Settings,
    flows: FlowsConfig,
    flow_name: str,
    from_start: bool = False,
    on_read: Callable[[int], None] | None = None,
) -> CatchUp:
    """Bring the flow's store up to the topics' current end."""
    flow = flows.get(flow_name)
    formats = [ref.plugin for ref in flow.export.formats]
    summary = CatchUp()
    with ExportStore(store_path(settings, flow_name)) as store:
        seen = store.offsets()

        def start_at(tp: TopicPartition, first: int, end: int) -> int:
            if from_start:
                return first
            last = seen.get(tp.topic, {}).get(str(tp.partition))
            return first if last is None else last + 1

        events: list[StoredEvent] = []
        async for messages in read_to_end(settings.kafka, CONSUMES, start_at):
            for m in messages:
                value = m.value or b""
                try:
                    kept = accept(flows, m.topic, m.partition, m.offset, value, settings.kafka)
                except UnknownFlowError:
                    summary.other_flows += 1  # another flow file's record
                    continue
                except (ValidationError, ValueError) as exc:
                    summary.invalid.append(f"{m.topic}[{m.partition}]@{m.offset}: {exc}")
                    continue
                if kept is not None and kept[0] == flow_name:
                    events.append(kept[1])
                    summary.kept += 1
                    summary.waiting.discard(kept[1].record_id)  # people answered since
                    continue
                name = settings.kafka.logical_topic(m.topic)
                record = record_of(name, value) if kept is None else None
                if record is not None and record.flow == flow_name:
                    summary.waiting.add(record.record_id)
                else:
                    summary.other_flows += 1
            summary.read += len(messages)
            if len(events) >= WRITE_BATCH:
                summary.changed += store.add(events, formats)
                events = []
            if on_read is not None:
                on_read(len(messages))
        if events:
            summary.changed += store.add(events, formats)
    return summary


def export_now(
    settings: Settings,
    flows: FlowsConfig,
    flow_name: str,
    refs: list[PluginRef],
    on_records: Callable[[int], None] | None = None,
) -> list[ExportResult]:
    flow = flows.get(flow_name)
    with ExportStore(store_path(settings, flow_name)) as store:
        return export_versions(settings, flow_name, flow, refs, store, on_records=on_records)


async def announce(settings: Settings, flows: FlowsConfig, results: list[ExportResult]) -> None:
    """Push each new version to the Hub where its flow says so (the Hub's trouble retried);
    emit `datasets.exported`; note each announced version in the flow's store. A version left
    unannounced (Kafka unreachable, the command stopped) is announced by the exporter service
    at its next export of the flow or its next start."""
    created = [r for r in results if r.created]
    if not created:
        return
    retries = DeadLetters("exporter", settings.retry)
    for result in created:
        hub = flows.get(result.flow).export.push_to_hub
        if hub is not None:
            await push_until_done(settings, hub, result, retries)
    producer = AIOKafkaProducer(**admin_client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        for result in created:
            await producer.send_and_wait(
                settings.kafka.topic(DATASETS_EXPORTED), result.event().to_bytes(), key=result.key
            )
            with ExportStore(store_path(settings, result.flow)) as store:
                store.mark_announced(result.format, result.version)
    finally:
        await producer.stop()
