"""One trace per record through a stage: the stage's span for a record is a child of the
context the record's message carried, and what the stage passes on carries that trace on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings
from shared.telemetry import RECORD_ID, context_from_headers, context_from_traceparent
from tests.support.spans import kept_spans

TRACES = {
    "r1": "0af7651916cd43dd8448eb211c80319c",
    "r2": "4bf92f3577b34da6a3ce929d0e0e4736",
}
FLOWS = {"flows": {"f": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}}


def upstream(record_id: str) -> trace.Span:
    """The span of the stage before, in the record's trace."""
    return trace.get_current_span(
        context_from_traceparent(f"00-{TRACES[record_id]}-00f067aa0ba902b7-01")
    )


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    with kept_spans() as kept:
        yield kept


def context(provider: TracerProvider) -> ServiceContext:
    settings = Settings()
    broker, dead_letters = build_broker(settings, "unit", provider)
    return ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows(FLOWS, "x"),
        broker=broker,
        dead_letters=dead_letters,
        tracer_provider=provider,
    )


def record_spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found = {}
    for span in exporter.get_finished_spans():
        record_id = (span.attributes or {}).get(RECORD_ID)
        if isinstance(record_id, str):
            found[record_id] = span
    return found


@pytest.mark.parametrize("concurrently", [True, False])
async def test_each_record_stays_in_its_own_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter], concurrently: bool
) -> None:
    provider, exporter = spans
    ctx = context(provider)
    passed_on: dict[str, str] = {}  # record id -> trace id its output message carries

    async def generate(record: Record, c: ServiceContext) -> None:
        await c.pass_on(record, "generate")

    if concurrently:
        ctx.consume_concurrently(RECORDS_INGESTED, Record, generate, 10)
    else:
        ctx.consume(RECORDS_INGESTED, Record, generate)

    @ctx.broker.subscriber(RECORDS_GENERATED)
    async def out(message: KafkaMessage) -> None:
        record = Record.model_validate_json(message.body)
        carried = trace.get_current_span(context_from_headers(message.headers.items()))
        passed_on[record.record_id] = format(carried.get_span_context().trace_id, "032x")

    async with TestKafkaBroker(ctx.broker) as broker:
        for record_id in TRACES:
            body = Record(record_id=record_id, flow="f", instruction="q").to_bytes()
            # Published inside the record's trace, as the stage before does.
            with trace.use_span(upstream(record_id)):
                await broker.publish(body, topic=RECORDS_INGESTED, key=record_id)

    found = record_spans(exporter)
    assert set(found) == set(TRACES)
    for record_id, trace_id in TRACES.items():
        span = found[record_id]
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.parent is not None and span.parent.trace_id == span.context.trace_id
        if concurrently:  # the batch's span is linked
            assert len(span.links) == 1
        assert passed_on[record_id] == trace_id
