"""OpenTelemetry tracing for a Loopline process: the tracer provider, and one trace per record.

A record's trace starts where the record enters (the caller's trace when its HTTP request sent
`traceparent`, the app's own trace for a record made from an OTLP span) and follows it through
every stage: W3C trace context travels in the Kafka headers of each message (FastStream's
telemetry middleware injects it on publish), inside Argilla as the record's `traceparent`
metadata (publisher to collector), and each stage opens a span for the record as a child of
the context its message carried (`record_span`). Stages that handle records in batches link
the batch's span and each record's span to each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import TelemetrySettings

TRACER_NAME = "loopline"
RECORD_ID = "loopline.record_id"  # span attribute: the record a span is about
FLOW = "loopline.flow"
_PROPAGATOR = TraceContextTextMapPropagator()
_FIELDS = frozenset(_PROPAGATOR.fields)  # traceparent, tracestate


class _HashedOnce(Resource):
    """A resource that computes its hash once. The OTLP exporter groups every span it sends by
    its resource, and `Resource.__hash__` serialises the attributes to JSON each time (~5 us a
    span, a fifth of encoding one); a resource's attributes never change."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


class NoTracing(trace.NoOpTracerProvider):
    """The tracer provider of a process with telemetry off: OpenTelemetry's no-op one. Its
    tracers record nothing; a span started under a context that holds a span is that span, so
    the trace context a message carried is passed on unchanged (and none is made up)."""

    def shutdown(self) -> None:
        """Nothing to flush."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def build_tracer_provider(service: str, settings: TelemetrySettings) -> TracerProvider | NoTracing:
    """A tracer provider named after the service; exports over OTLP/HTTP when configured.
    `NoTracing` when telemetry is off."""
    if not settings.enabled:
        return NoTracing()
    resource = Resource.create({"service.name": f"{settings.service_name_prefix}-{service}"})
    provider = TracerProvider(resource=_HashedOnce(resource.attributes, resource.schema_url))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def tracer_of(provider: trace.TracerProvider | None) -> Tracer:
    """The Loopline tracer of `provider` (the process's global one when None)."""
    return (provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME)


def context_from_headers(headers: Iterable[tuple[str, bytes | str]] | None) -> Context:
    """The trace context a Kafka message carried in its headers (empty if none)."""
    carrier: dict[str, str] = {}
    for key, value in headers or ():
        if key.lower() in _FIELDS:
            carrier[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else value
    return _PROPAGATOR.extract(carrier)


def context_from_traceparent(traceparent: str | None) -> Context:
    """The trace context of a W3C `traceparent` value (empty if None or malformed)."""
    return _PROPAGATOR.extract({"traceparent": traceparent} if traceparent else {})


def context_of_span(trace_id: str, span_id: str) -> Context:
    """The context of a span known by its hex ids (an app's span that came in over OTLP), as
    a remote parent; empty when the ids are not a valid span context."""
    try:
        span_context = SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return Context()
    if not span_context.is_valid:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if one is recording or was propagated."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def link_to(context: Context | Span | None) -> list[Link]:
    """A link to the span of `context` (or `span`), none if it has no valid span."""
    if context is None:
        return []
    span = context if isinstance(context, Span) else trace.get_current_span(context)
    span_context = span.get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextmanager
def record_span(
    tracer: Tracer,
    name: str,
    record_id: str,
    *,
    parent: Context | None = None,
    flow: str | None = None,
    links: Sequence[Link] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span about one record, current inside the block: a child of `parent` (the context
    the record's message carried), or of the current span when `parent` is None."""
    attributes = {RECORD_ID: record_id, **({FLOW: flow} if flow else {})}
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, links=links
    ) as span:
        yield span
