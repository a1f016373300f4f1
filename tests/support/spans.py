"""Spans a test can read: an SDK tracer provider that keeps every finished span in memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.telemetry import RECORD_ID, context_from_traceparent


@contextmanager
def kept_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


def spans_about(exporter: InMemorySpanExporter, record_id: str) -> list[ReadableSpan]:
    """The finished spans about one record (attribute `loopline.record_id`)."""
    return [
        span
        for span in exporter.get_finished_spans()
        if (span.attributes or {}).get(RECORD_ID) == record_id
    ]


def trace_id_of(traceparent: str) -> int:
    return trace.get_current_span(context_from_traceparent(traceparent)).get_span_context().trace_id
