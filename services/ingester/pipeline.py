"""The ingester's one path for every input: validate, redact, dedupe, route, publish.

HTTP, OTLP traces, the `records.incoming` topic and batch imports all go through
`IngestPipeline.ingest`, so a record is treated the same whichever way it came in. Each record is
checked on its own (a bad one is rejected with its field paths, the others go on) and nothing of
a batch is published before every record of it was checked: a record that would not fit in a
Kafka message is refused (413) instead of failing the batch half-way through its publish.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Tracer
from pydantic import BaseModel, ValidationError

from services.ingester.bounded_json import Unreadable
from services.ingester.dedup import SeenWindow, content_fingerprint, record_text
from services.ingester.dedupers.base import NearDuplicateDetector
from services.ingester.item_checks import check_item, path_text
from services.ingester.redactors.base import Redactor, redact_record_input
from services.ingester.routers.base import Router
from shared.events import RECORDS_UNROUTED, Record
from shared.failures import TransientError
from shared.flows import Flow, FlowsConfig, PluginRef, next_topic
from shared.metrics import record_passed
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import IngestSettings, KafkaSettings
from shared.telemetry import record_span, tracer_of

log = logging.getLogger("loopline.ingester")

# Room in a Kafka message for what is not the record: its key is counted apart; this is for the
# headers (content type, correlation and trace ids) and the record batch's own framing.
MESSAGE_HEADROOM_BYTES = 1024
# Records checked between two turns of the event loop (some 10 ms of work with redaction).
YIELD_EVERY = 64


class FieldError(BaseModel):
    path: str
    message: str


class Rejection(BaseModel):
    index: int
    status: int = 422  # 413: the record would not fit in a Kafka message
    errors: list[FieldError]


class PublishFailed(TransientError):
    """The broker did not take a batch. Nothing of it is remembered (seen, near-duplicates), so
    the client's retry goes through."""


class IngestResult(BaseModel):
    """Per request: what was accepted (new or duplicate) and what was rejected, and why."""

    accepted: list[str] = []
    duplicates: list[str] = []
    unrouted: list[str] = []
    rejected: list[Rejection] = []


@dataclass
class IngestStats:
    received: int = 0
    published: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    unrouted: int = 0
    rejected: int = 0
    redactions: int = 0
    otlp_spans_not_llm: int = 0
    otlp_spans_without_content: int = 0
    # The join of LLM spans and their GenAI log-record events (OTLP /v1/logs):
    otlp_spans_held: int = 0  # spans without content held to wait for their events
    otlp_log_records_ignored: int = 0  # log records that are not GenAI content events
    otlp_events_rejected: int = 0  # content events without a span context
    otlp_events_without_span: int = 0  # content events whose span did not come in the wait
    otlp_join_evicted: int = 0  # entries that stopped waiting early (the join's bounds)


# One message to publish: topic (its logical name), key, value, and the trace context it is
# published in (its record's ingest span).
Message = tuple[str, str, bytes, Context]
# The trace a batch's record `index` joins: a context (an empty one starts a trace of its own),
# or None for the current one.
Parents = Callable[[int], Context | None]


class Publisher(Protocol):
    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Publish the messages, each in its trace context; return once the broker
        acknowledged them all."""
        ...


class BrokerPublisher:
    """Publishes through the service's FastStream broker, many sends in flight at once, to the
    flow set's topics (`kafka.topic`)."""

    def __init__(self, broker: KafkaBroker, kafka: KafkaSettings) -> None:
        self.broker = broker
        self.kafka = kafka

    async def publish_many(self, messages: Sequence[Message]) -> None:
        topic = self.kafka.topic
        pending = []
        for name, key, value, context in messages:
            token = otel_context.attach(context)  # the message carries its record's trace
            try:
                sent = await self.broker.publish(
                    value, topic=topic(name), key=key.encode(), no_confirm=True
                )
            finally:
                otel_context.detach(token)
            pending.append(sent)
        # FastStream's test broker delivers at once and has nothing left to wait for.
        await asyncio.gather(*(sent for sent in pending if inspect.isawaitable(sent)))


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(path=path_text(tuple(error["loc"])), message=error["msg"])
        for error in exc.errors()
    ]


@dataclass
class FlowSteps:
    """One flow's ingest steps, with their plugins built once."""

    flow: Flow
    router: Router
    redactor: Redactor | None
    near_duplicates: NearDuplicateDetector | None
    seen: SeenWindow[str] | None
    topic: str

    @classmethod
    def build(cls, flow: Flow, registry: PluginRegistry) -> FlowSteps:
        def plugin(kind: PluginKind, ref: PluginRef | None) -> Any:
            return registry.build(kind, ref.plugin, ref.options) if ref is not None else None

        options = flow.ingest
        return cls(
            flow=flow,
            router=plugin(PluginKind.routers, flow.route or PluginRef(plugin="all")),
            redactor=plugin(PluginKind.redactors, options.redact),
            near_duplicates=plugin(PluginKind.dedupers, options.near_duplicates),
            seen=SeenWindow(options.dedup.window_s, options.dedup.max_entries)
            if options.dedup.enabled
            else None,
            topic=next_topic(flow, "ingest"),
        )


@dataclass
class _Batch:
    result: IngestResult = field(default_factory=IngestResult)
    messages: list[Message] = field(default_factory=list)
    parents: Parents | None = None
    ingested: Counter[str] = field(default_factory=Counter)  # flow -> records routed in it
    remember: list[tuple[FlowSteps, list[str], str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    # Near-duplicate detectors that remembered a record of this batch, to forget it if the batch
    # is not published after all.
    near: list[tuple[NearDuplicateDetector, str]] = field(default_factory=list)


class IngestPipeline:
    def __init__(
        self,
        flows: FlowsConfig,
        publisher: Publisher,
        default_flow: str,
        registry: PluginRegistry | None = None,
        *,
        max_message_bytes: int = KafkaSettings().max_message_bytes,
        max_depth: int = IngestSettings().max_depth,
        tracer: Tracer | None = None,
    ) -> None:
        registry = registry or PluginRegistry()
        self.tracer = tracer if tracer is not None else tracer_of(None)
        self.steps = {name: FlowSteps.build(flow, registry) for name, flow in flows.flows.items()}
        self.publisher = publisher
        self.default_flow = default_flow
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.stats = IngestStats()

    def stats_otlp(self, not_llm: int, without_content: int) -> None:
        self.stats.otlp_spans_not_llm += not_llm
        self.stats.otlp_spans_without_content += without_content
        if not_llm or without_content:
            log.info(
                "OTLP: ignored %d span(s) that are not LLM calls and %d without content",
                not_llm,
                without_content,
            )

    def flow_of(self, item: Any) -> str:
        flow = item.get("flow") if isinstance(item, dict) else None
        return flow if isinstance(flow, str) and flow else self.default_flow

    async def ingest(self, items: Sequence[Any], parents: Parents | None = None) -> IngestResult:
        """Ingest a batch; returns once every accepted record is on the broker. Each record's
        trace starts with an `ingester ingest` span, a child of `parents(index)` (the caller's
        trace, or the app's span a record was made from; the current context without them).

        Raises `PublishFailed` when the broker did not take them (nothing is remembered then).
        """
        batch = _Batch(parents=parents)
        for index, item in enumerate(items):
            self._one(index, item, batch)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a large batch does not hold up other requests
        self.stats.received += len(items)
        if batch.messages:
            try:
                await self.publisher.publish_many(batch.messages)
            except BaseException as exc:
                self._forget(batch.near)
                if isinstance(exc, Exception):
                    count = len(batch.messages)
                    raise PublishFailed(
                        f"the broker did not take {count} record(s): {exc!r}"
                    ) from exc
                raise
        # Only what reached the broker counts as seen: a failed publish can be retried.
        for steps, keys, record_id in batch.remember:
            if steps.seen is not None:
                for key in keys:
                    steps.seen.add(key, record_id)
        self.stats.published += len(batch.messages)
        for flow, count in batch.ingested.items():
            record_passed("ingester", flow, "ingested", count)
        return batch.result

    @staticmethod
    def _forget(near: list[tuple[NearDuplicateDetector, str]]) -> None:
        """Near-duplicate detectors forget records that were not published after all."""
        for detector, key in near:
            try:
                detector.forget(key)
            except NotImplementedError as exc:
                log.warning("record %s: %s; a retry may be taken for a near-duplicate", key, exc)

    def _reject(
        self, batch: _Batch, index: int, errors: list[FieldError], status: int = 422
    ) -> None:
        batch.result.rejected.append(Rejection(index=index, status=status, errors=errors))
        self.stats.rejected += 1

    def _one(self, index: int, item: Any, batch: _Batch) -> None:
        if isinstance(item, Unreadable):
            self._reject(batch, index, [FieldError(path="(record)", message=item.message)])
            return
        if not isinstance(item, dict):
            self._reject(batch, index, [FieldError(path="(record)", message="not a JSON object")])
            return
        problems = check_item(item, self.max_depth)
        if problems:
            errors = [FieldError(path=p.path, message=p.message) for p in problems]
            self._reject(batch, index, errors)
            return
        flow_name = self.flow_of(item)
        steps = self.steps.get(flow_name)
        if steps is None:
            known = ", ".join(sorted(self.steps))
            message = f"unknown flow {flow_name!r}; defined: {known}"
            self._reject(batch, index, [FieldError(path="flow", message=message)])
            return
        data = {**item, "flow": flow_name}
        if steps.redactor is not None:
            data, found = redact_record_input(data, steps.redactor)
            metadata = data.get("metadata", {})
            if found and isinstance(metadata, dict):  # any other shape: validation refuses it
                self.stats.redactions += sum(found.values())
                data["metadata"] = {**metadata, "redactions": found}
        try:
            record = Record.model_validate(data)
        except ValidationError as exc:
            self._reject(batch, index, field_errors(exc))
            return
        self._dedupe_and_route(index, record, steps, batch)

    def _message(self, index: int, record: Record, batch: _Batch) -> bytes | None:
        """The record as it goes on the wire, or None when it was rejected: it must read back
        as every downstream service reads it, and fit in a Kafka message."""
        try:
            value = record.to_bytes()
            Record.model_validate_json(value)
        except ValidationError as exc:
            self._reject(batch, index, field_errors(exc))
            return None
        except ValueError as exc:  # pydantic cannot serialise it
            self._reject(batch, index, [FieldError(path="(record)", message=str(exc))])
            return None
        size = len(value) + len(record.record_id.encode()) + MESSAGE_HEADROOM_BYTES
        if size > self.max_message_bytes:
            message = (
                f"the record is {size} bytes as a Kafka message (its JSON, its id and "
                f"{MESSAGE_HEADROOM_BYTES} bytes for headers), over the limit of "
                f"{self.max_message_bytes} bytes (LOOPLINE_KAFKA__MAX_MESSAGE_BYTES): send "
                "shorter texts or less metadata"
            )
            self._reject(batch, index, [FieldError(path="(record)", message=message)], 413)
            return None
        return value

    def _dedupe_and_route(
        self, index: int, record: Record, steps: FlowSteps, batch: _Batch
    ) -> None:
        record_id = record.record_id
        keys = [f"id:{record_id}", f"content:{content_fingerprint(record)}"]
        if steps.seen is not None and (
            any(key in batch.keys or steps.seen.get(key) is not None for key in keys)
        ):
            batch.result.accepted.append(record_id)
            batch.result.duplicates.append(record_id)
            self.stats.duplicates += 1
            log.debug("duplicate record %s dropped", record_id)
            return
        detector = steps.near_duplicates
        if detector is not None:
            earlier = detector.check_and_add(record_id, record_text(record))
            if earlier is not None:
                batch.result.accepted.append(record_id)
                batch.result.duplicates.append(record_id)
                self.stats.near_duplicates += 1
                log.debug("record %s dropped as near-duplicate of %s", record_id, earlier)
                return
        decision = steps.router.decide(record)
        routed = record.model_copy(update={"route": decision})
        value = self._message(index, routed, batch)
        if value is None:
            if detector is not None:
                self._forget([(detector, record_id)])
            return
        if detector is not None:
            batch.near.append((detector, record_id))
        topic = steps.topic if decision.routed else RECORDS_UNROUTED
        if not decision.routed:
            batch.result.unrouted.append(record_id)
            self.stats.unrouted += 1
        else:
            batch.ingested[record.flow] += 1
        batch.keys.update(keys)
        parent = batch.parents(index) if batch.parents is not None else None
        with record_span(
            self.tracer, "ingester ingest", record_id, parent=parent, flow=record.flow
        ) as span:
            span.set_attribute("loopline.route", topic)
            context = otel_context.get_current()
        batch.messages.append((topic, record_id, value, context))
        batch.remember.append((steps, keys, record_id))
        batch.result.accepted.append(record_id)
