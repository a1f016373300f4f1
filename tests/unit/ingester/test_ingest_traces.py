"""A record's trace starts at the ingester: its `ingester ingest` span is a child of the
caller's context when the request sent `traceparent` (else each record starts a trace of its
own), or of the app's span a record was made from (OTLP); the record's message is published in
that trace, so every later stage joins it."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from services.ingester.pipeline import Message
from shared.telemetry import tracer_of
from tests.support.spans import kept_spans, spans_about, trace_id_of
from tests.unit.ingester.http_app import RecordingPublisher, ingester
from tests.unit.ingester.otlp_export import export_request, prompt_attributes

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class TracedPublisher(RecordingPublisher):
    """Keeps the trace id each message is published in."""

    def __init__(self) -> None:
        super().__init__()
        self.trace_ids: dict[str, int] = {}

    async def publish_many(self, messages: Sequence[Message]) -> None:
        await super().publish_many(messages)
        for _, key, _, context in messages:
            self.trace_ids[key] = trace.get_current_span(context).get_span_context().trace_id


def ingest_span(exporter: InMemorySpanExporter, record_id: str) -> ReadableSpan:
    [span] = [s for s in spans_about(exporter, record_id) if s.name == "ingester ingest"]
    return span


async def test_records_join_the_callers_trace() -> None:
    publisher = TracedPublisher()
    with kept_spans() as (provider, exporter):
        async with ingester(publisher=publisher) as ing:
            ing.pipeline.tracer = tracer_of(provider)
            records = [{"record_id": r, "instruction": f"Hi {r}?"} for r in ("a", "b")]
            answer = await ing.post(records, traceparent=CALLER)
        assert answer.status_code == 200, answer.text
        for record_id in ("a", "b"):
            span = ingest_span(exporter, record_id)
            assert span.context.trace_id == trace_id_of(CALLER)
            assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
            assert publisher.trace_ids[record_id] == trace_id_of(CALLER)


async def test_without_a_caller_trace_each_record_starts_its_own() -> None:
    publisher = TracedPublisher()
    with kept_spans() as (provider, exporter):
        async with ingester(publisher=publisher) as ing:
            ing.pipeline.tracer = tracer_of(provider)
            await ing.post([{"record_id": r, "instruction": f"Hi {r}?"} for r in ("a", "b")])
        spans = {r: ingest_span(exporter, r) for r in ("a", "b")}
    assert spans["a"].parent is None and spans["b"].parent is None
    assert spans["a"].context.trace_id != spans["b"].context.trace_id
    assert publisher.trace_ids == {r: s.context.trace_id for r, s in spans.items()}


async def test_a_record_made_from_an_apps_span_joins_the_apps_trace() -> None:
    app_spans: list[trace.Span] = []

    def build(tracer: Tracer) -> None:
        span = tracer.start_span("chat qwen", attributes=prompt_attributes())
        app_spans.append(span)
        span.end()

    body = export_request(build).SerializeToString()
    [app_span] = app_spans
    app = app_span.get_span_context()
    publisher = TracedPublisher()
    with kept_spans() as (provider, exporter):
        async with ingester(publisher=publisher) as ing:
            ing.pipeline.tracer = tracer_of(provider)
            answer = await ing.otlp_export("/v1/traces", body)
        assert answer.status_code == 200, answer.text
        [record_id] = publisher.ids()
        span = ingest_span(exporter, record_id)
    assert span.context.trace_id == app.trace_id
    assert span.parent is not None and span.parent.span_id == app.span_id
    assert publisher.trace_ids[record_id] == app.trace_id
