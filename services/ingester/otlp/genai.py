"""GenAI semantic conventions: the LLM spans of an OTLP export request, turned into raw records.

Apps that are already instrumented with OpenTelemetry (GenAI semantic conventions, or the older
OpenLLMetry-style indexed attributes) can export their traces to the ingester instead of producing
records themselves. Each LLM span becomes one raw record dict, which the ingester then validates
as a `shared.events.Record`; spans that are not LLM calls are counted and skipped.

Where the message content is depends on the app's instrumentation (`services.ingester.otlp.content`
reads every shape): on the span (attributes or span events), or in log-record events correlated
with the span (`gen_ai.client.inference.operation.details`, or the older
`gen_ai.{user,...}.message` and `gen_ai.choice` events), which the ingester receives on
`/v1/logs` and joins to the span (`services.ingester.otlp.join`). `span_record` takes those
events; a span whose content never comes (content capture switched off) makes no record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from services.ingester.otlp.content import (
    CHOICE_EVENT,
    MESSAGE_EVENTS,
    ContentEvent,
    finish_reasons,
    input_messages,
    iso,
    output,
    params,
    text_value,
    usage,
)
from services.ingester.otlp.wire import attributes

__all__ = [
    "DETAILS_EVENT",
    "LLMSpan",
    "SpanConversion",
    "join_complete",
    "llm_spans",
    "span_record",
    "spans_to_records",
    "valid_span_context",
]

# A span is an LLM call when it carries any of these.
_LLM_MARKERS = (
    "gen_ai.operation.name",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.request.model",
)
# One log-record event per call, with the call's attributes and all its messages.
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_FLOW_KEY = "loopline.flow"
_TAGS_KEY = "loopline.tags"

SpanKey = tuple[str, str]  # (trace id, span id), in hex
_NO_TRACE, _NO_SPAN = bytes(16), bytes(8)


def valid_span_context(trace_id: bytes, span_id: bytes) -> bool:
    """Ids a span can be found by: 16 and 8 bytes, not all zero (W3C trace context)."""
    return (
        len(trace_id) == 16 and trace_id != _NO_TRACE and len(span_id) == 8 and span_id != _NO_SPAN
    )


@dataclass
class LLMSpan:
    """One LLM span of an export request, as its record needs it."""

    trace_id: str  # hex
    span_id: str  # hex
    name: str
    start: int  # unix nanoseconds
    end: int
    attrs: dict[str, Any]
    resource_attrs: dict[str, Any]
    flow: str  # its own `loopline.flow`, its resource's, or the request's default flow
    failed: bool  # its status is an error: no answer will come
    joinable: bool  # its ids are valid, so log-record events can be joined to it
    events: list[ContentEvent] = field(default_factory=list)
    size: int = 0  # bytes on the wire (span and resource), what holding it costs

    @property
    def key(self) -> SpanKey:
        return (self.trace_id, self.span_id)


@dataclass
class SpanConversion:
    """What `spans_to_records` made of one export request."""

    records: list[dict[str, Any]]
    ignored_not_llm: int
    ignored_no_content: int


def _is_llm_span(attrs: Mapping[str, Any]) -> bool:
    return any(attrs.get(key) is not None for key in _LLM_MARKERS)


def llm_spans(request: ExportTraceServiceRequest, default_flow: str) -> tuple[list[LLMSpan], int]:
    """The LLM spans of an export request, and how many spans are not LLM calls."""
    found: list[LLMSpan] = []
    not_llm = 0
    for resource_spans in request.resource_spans:
        resource_attrs = attributes(resource_spans.resource.attributes)
        resource_size = resource_spans.resource.ByteSize()
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = attributes(span.attributes)
                if not _is_llm_span(attrs):
                    not_llm += 1
                    continue
                found.append(
                    LLMSpan(
                        trace_id=bytes(span.trace_id).hex(),
                        span_id=bytes(span.span_id).hex(),
                        name=span.name,
                        start=int(span.start_time_unix_nano),
                        end=int(span.end_time_unix_nano),
                        attrs=attrs,
                        resource_attrs=resource_attrs,
                        flow=text_value(attrs.get(_FLOW_KEY))
                        or text_value(resource_attrs.get(_FLOW_KEY))
                        or default_flow,
                        failed=span.status.code == Status.STATUS_CODE_ERROR,
                        joinable=valid_span_context(bytes(span.trace_id), bytes(span.span_id)),
                        events=[
                            ContentEvent(event.name, attributes(event.attributes))
                            for event in span.events
                        ],
                        size=span.ByteSize() + resource_size,
                    )
                )
    return found, not_llm


def spans_to_records(request: ExportTraceServiceRequest, default_flow: str) -> SpanConversion:
    """Turn every LLM span of an export request that carries its content into a record dict
    (no joining: spans whose content comes as log records are counted as without content)."""
    spans, not_llm = llm_spans(request, default_flow)
    conversion = SpanConversion(records=[], ignored_not_llm=not_llm, ignored_no_content=0)
    for span in spans:
        record = span_record(span)
        if record is None:
            conversion.ignored_no_content += 1
        else:
            conversion.records.append(record)
    return conversion


def join_complete(span: LLMSpan, events: Sequence[ContentEvent]) -> bool:
    """Whether the log-record events joined to `span` are all it will get: the details event
    (one per call, holding every message), or a `gen_ai.choice` (the older events: the answer
    comes after the messages), or the messages of a call that failed (no answer comes)."""
    names = {event.name for event in events}
    if DETAILS_EVENT in names or CHOICE_EVENT in names:
        return True
    return span.failed and not names.isdisjoint(MESSAGE_EVENTS)


def _content(
    span: LLMSpan, joined: Sequence[ContentEvent]
) -> tuple[dict[str, Any], list[ContentEvent]]:
    """The span's attributes and events with the joined log-record events: a details event's
    attributes fill in what the span lacks (its messages), the others are events."""
    attrs = span.attrs
    events = list(span.events)
    for event in joined:
        if event.name == DETAILS_EVENT:
            if attrs is span.attrs:
                attrs = dict(span.attrs)
            for key, value in event.attrs.items():
                if key != "body":
                    attrs.setdefault(key, value)
        else:
            events.append(event)
    return attrs, events


def _tags(value: Any) -> list[str] | None:
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return None
    return [str(item).strip() for item in items if str(item).strip()]


def _record_id(trace_id_hex: str, span_id_hex: str) -> str:
    """The record id of a span: stable, so a re-exported span dedupes."""
    return hashlib.sha256(f"{trace_id_hex}:{span_id_hex}".encode()).hexdigest()[:32]


def span_record(span: LLMSpan, joined: Sequence[ContentEvent] = ()) -> dict[str, Any] | None:
    """The record of an LLM span, with the log-record events joined to it; None when neither
    carries the prompt (the app does not capture message content)."""
    attrs, events = _content(span, joined)
    messages = input_messages(attrs, events)
    if not messages:
        return None

    text, finish_reason = output(attrs, events)
    if not text and len(messages) > 1 and messages[-1]["role"] == "assistant":
        # The app logged the whole conversation, answer included, as input.
        text = messages.pop()["content"]
    finish_reason = finish_reason or finish_reasons(attrs)
    start, end = span.start, span.end

    responses: list[dict[str, Any]] = []
    if text:
        response: dict[str, Any] = {
            "text": text,
            "model": text_value(attrs.get("gen_ai.response.model"))
            or text_value(attrs.get("gen_ai.request.model"))
            or "unknown",
            "source": "app",
            "finish_reason": finish_reason,
            "params": params(attrs),
        }
        tokens = usage(attrs)
        if tokens is not None:
            response["usage"] = tokens
        if start and end >= start:
            response["latency_ms"] = (end - start) / 1e6
        if end:
            response["created_at"] = iso(end)
        responses.append(response)

    metadata: dict[str, Any] = {
        "source": "otlp",
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "span_name": span.name,
    }
    optional = {
        "service_name": text_value(span.resource_attrs.get("service.name")),
        "provider": text_value(attrs.get("gen_ai.provider.name"))
        or text_value(attrs.get("gen_ai.system")),
        "operation": text_value(attrs.get("gen_ai.operation.name")),
    }
    metadata.update({key: value for key, value in optional.items() if value is not None})

    record: dict[str, Any] = {
        "record_id": _record_id(span.trace_id, span.span_id),
        "flow": span.flow,
        "messages": messages,
        "responses": responses,
        "metadata": metadata,
    }
    tags = _tags(attrs.get(_TAGS_KEY))
    if tags is not None:
        record["tags"] = tags
    if start:
        record["created_at"] = iso(start)
    return record
