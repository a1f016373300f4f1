"""Helpers for the OTLP tests: real OpenTelemetry SDK spans -> the real export request -> the
wire encoding (protobuf, OTLP/JSON, OTLP/JSON with snake_case keys) -> parse_export_request,
then the records spans_to_records makes of them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from services.ingester.otlp.genai import SpanConversion, spans_to_records
from services.ingester.otlp.wire import parse_export_request
from shared.events import Record

START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
END_NS = START_NS + 1_250_000_000  # 1.25 s later

Build = Callable[[Tracer], None]


def export_request(build: Build, resource: dict[str, Any] | None = None) -> Any:
    """Run `build` against a real tracer and encode the finished spans like the exporter does."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "chat-app", **(resource or {})})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test.instrumentation"))
    provider.shutdown()
    request = encode_spans(exporter.get_finished_spans())
    assert isinstance(request, ExportTraceServiceRequest)
    return request


def llm_span(
    tracer: Tracer,
    attributes: dict[str, Any],
    events: Sequence[tuple[str, dict[str, Any]]] = (),
    name: str = "chat qwen",
) -> None:
    span = tracer.start_span(name, attributes=attributes, start_time=START_NS)
    for event_name, event_attributes in events:
        span.add_event(event_name, event_attributes)
    span.end(end_time=END_NS)


def _ids_to_hex(obj: Any) -> None:
    """protobuf's JSON mapping writes ids as base64; OTLP/JSON writes them as hex."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in {
                "traceId",
                "spanId",
                "parentSpanId",
                "trace_id",
                "span_id",
                "parent_span_id",
            }:
                obj[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(obj, list):
        for item in obj:
            _ids_to_hex(item)


def otlp_json(request: Any, snake_case: bool = False) -> bytes:
    document = json_format.MessageToDict(request, preserving_proto_field_name=snake_case)
    _ids_to_hex(document)
    return json.dumps(document).encode()


ENCODINGS = ["protobuf", "json", "json-snake-case"]


def over_the_wire(request: Any, encoding: str) -> Any:
    if encoding == "protobuf":
        return parse_export_request(request.SerializeToString(), "application/x-protobuf")
    body = otlp_json(request, snake_case=encoding == "json-snake-case")
    return parse_export_request(body, "application/json; charset=utf-8")


def convert(
    build: Build,
    encoding: str,
    resource: dict[str, Any] | None = None,
    default_flow: str = "default-flow",
) -> SpanConversion:
    parsed = over_the_wire(export_request(build, resource), encoding)
    conversion = spans_to_records(parsed, default_flow)
    for raw in conversion.records:
        Record.model_validate(raw)  # every record dict is a valid Record
    return conversion


def only_record(build: Build, encoding: str, **kwargs: Any) -> dict[str, Any]:
    conversion = convert(build, encoding, **kwargs)
    assert len(conversion.records) == 1, conversion
    return conversion.records[0]


def prompt_attributes(flow: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "Hi",
    }
    if flow is not None:
        attributes["loopline.flow"] = flow
    return attributes
