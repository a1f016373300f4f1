"""GenAI content events of an OTLP logs export request, grouped by the span they belong to.

Instrumentations that follow the newer GenAI conventions put message content in log-record
events correlated with the LLM call's span (trace id and span id on the log record) instead of
on the span: one `gen_ai.client.inference.operation.details` event per call (the messages as
structured attributes), or, in older versions, one `gen_ai.{system,user,assistant,tool}.message`
event per message and one `gen_ai.choice` per answer (the content in the body). The event's
name is the log record's `event_name`, or its `event.name` attribute (older SDKs).

Other log records (an app's ordinary logs, exported alongside) are counted and ignored; a
content event without a span context cannot be joined to any span and is refused on its own,
named with its place in the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ingester.otlp.content import CHOICE_EVENT, MESSAGE_EVENTS, ContentEvent
from services.ingester.otlp.genai import DETAILS_EVENT, SpanKey, valid_span_context
from services.ingester.otlp.wire import any_value, attributes

__all__ = ["CONTENT_EVENTS", "LogConversion", "SpanEvents", "content_events"]

CONTENT_EVENTS = frozenset({DETAILS_EVENT, CHOICE_EVENT, *MESSAGE_EVENTS})


@dataclass
class SpanEvents:
    """The content events of one span in one request, and the bytes they hold."""

    events: list[ContentEvent] = field(default_factory=list)
    size: int = 0


@dataclass
class LogConversion:
    """What `content_events` made of one logs export request."""

    by_span: dict[SpanKey, SpanEvents] = field(default_factory=dict)
    ignored: int = 0  # log records that are not GenAI content events
    rejected: list[str] = field(default_factory=list)  # per refused event: what and where

    @property
    def events(self) -> int:
        return sum(len(found.events) for found in self.by_span.values())


def _event_name(record: Any, attrs: dict[str, Any]) -> str:
    if record.event_name:
        return str(record.event_name)
    name = attrs.get("event.name")
    return name if isinstance(name, str) else ""


def content_events(request: Any) -> LogConversion:
    """The GenAI content events of an `ExportLogsServiceRequest`, by (trace id, span id)."""
    conversion = LogConversion()
    for r, resource_logs in enumerate(request.resource_logs):
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            for i, record in enumerate(scope_logs.log_records):
                attrs = attributes(record.attributes)
                name = _event_name(record, attrs)
                if name not in CONTENT_EVENTS:
                    conversion.ignored += 1
                    continue
                trace_id, span_id = bytes(record.trace_id), bytes(record.span_id)
                if not valid_span_context(trace_id, span_id):
                    conversion.rejected.append(
                        f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]: {name} event has "
                        "no span context (traceId and spanId), so it cannot be joined to its "
                        "LLM span; emit it while the span is current"
                    )
                    continue
                if record.HasField("body"):
                    body = any_value(record.body)
                    if body is not None:
                        attrs["body"] = body
                found = conversion.by_span.setdefault((trace_id.hex(), span_id.hex()), SpanEvents())
                found.events.append(ContentEvent(name, attrs))
                found.size += record.ByteSize()
    return conversion
