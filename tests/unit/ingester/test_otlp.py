"""OTLP trace export requests from the real OpenTelemetry SDK, turned into records."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from services.ingester.otlp.genai import SpanConversion, spans_to_records
from services.ingester.otlp.wire import OTLPFormatError, export_response, parse_export_request
from shared.events import Record, Role

START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
END_NS = START_NS + 1_250_000_000  # 1.25 s later

Build = Callable[[Tracer], None]


# --------------------------------------------------------------------------------------------
# Helpers: real SDK spans -> real export request -> wire encoding -> parse_export_request


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


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


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


# --------------------------------------------------------------------------------------------
# Input shape 1: gen_ai.input.messages (+ gen_ai.system_instructions), output attribute


def _current_semconv(tracer: Tracer) -> None:
    llm_span(
        tracer,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "qwen2.5-1.5b",
            "gen_ai.response.model": "qwen2.5-1.5b-instruct-q4",
            "gen_ai.request.temperature": 0.7,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.max_tokens": 256,
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.system_instructions": json.dumps(
                [{"type": "text", "content": "Be brief."}, {"type": "text", "content": "Be kind."}]
            ),
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": "What is Kafka?"}]},
                    {"role": "model", "parts": [{"type": "text", "content": "A log."}]},
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": "Say more,"},
                            {"type": "uri", "modality": "image", "uri": "https://x/y.png"},
                            {"type": "text", "content": "please."},
                        ],
                    },
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "reasoning", "content": "thinking..."},
                            {"type": "text", "content": "A distributed commit log."},
                        ],
                        "finish_reason": "stop",
                    }
                ]
            ),
            "loopline.flow": "support",
            "loopline.tags": ["prod", "eu"],
        },
    )


def test_current_semconv_span_becomes_a_full_record(encoding: str) -> None:
    record = only_record(_current_semconv, encoding)

    assert record["flow"] == "support"
    assert record["messages"] == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {"role": "user", "content": "What is Kafka?"},
        {"role": "assistant", "content": "A log."},
        {"role": "user", "content": "Say more,\nplease."},
    ]
    [response] = record["responses"]
    assert response["text"] == "A distributed commit log."
    assert response["model"] == "qwen2.5-1.5b-instruct-q4"  # response model wins
    assert response["source"] == "app"
    assert response["finish_reason"] == "stop"
    assert response["usage"] == {"prompt_tokens": 42, "completion_tokens": 7}
    assert response["latency_ms"] == pytest.approx(1250.0)
    assert response["params"] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256}
    assert isinstance(response["params"]["max_tokens"], int)
    assert record["tags"] == ["prod", "eu"]
    assert record["created_at"] == "2023-11-14T22:13:20+00:00"

    metadata = record["metadata"]
    assert metadata["source"] == "otlp"
    assert len(metadata["trace_id"]) == 32 and len(metadata["span_id"]) == 16
    assert metadata["span_name"] == "chat qwen"
    assert metadata["service_name"] == "chat-app"
    assert metadata["provider"] == "openai"
    assert metadata["operation"] == "chat"

    validated = Record.model_validate(record)
    assert validated.record_id == record["record_id"]
    assert validated.messages is not None and validated.messages[0].role is Role.system
    assert validated.responses[0].usage is not None
    assert validated.responses[0].usage.total_tokens == 49
    assert validated.created_at.isoformat() == "2023-11-14T22:13:20+00:00"


def test_system_instructions_as_plain_string_and_request_model_fallback(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.request.model": "small-model",
                "gen_ai.system_instructions": "You answer in French.",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Hello"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "Bonjour"}]}]
                ),
                "gen_ai.response.finish_reasons": ["length"],
                "gen_ai.usage.input_tokens": 5,  # no output tokens: usage is left out
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello"},
    ]
    [response] = record["responses"]
    assert response["model"] == "small-model"
    assert response["finish_reason"] == "length"  # from gen_ai.response.finish_reasons
    assert "usage" not in response
    assert response["params"] == {}
    assert "provider" not in record["metadata"] and "operation" not in record["metadata"]
    assert "tags" not in record


# --------------------------------------------------------------------------------------------
# Input shape 2: message events, output via gen_ai.choice


def test_message_events_and_choice_event(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-x"},
            events=[
                ("gen_ai.system.message", {"content": "You are terse."}),
                ("gen_ai.user.message", {"content": "Hi"}),
                ("gen_ai.assistant.message", {"gen_ai.event.content": '{"content": "Hello."}'}),
                ("gen_ai.tool.message", {"body": json.dumps({"content": "42", "id": "call_1"})}),
                ("gen_ai.user.message", {"gen_ai.event.content": "What did the tool say?"}),
                ("unrelated.event", {"content": "not a message"}),
                (
                    "gen_ai.choice",
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": json.dumps({"role": "assistant", "content": "It said 42."}),
                    },
                ),
            ],
        )

    record = only_record(build, encoding)
    assert record["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": "What did the tool say?"},
    ]
    [response] = record["responses"]
    assert response["text"] == "It said 42."
    assert response["finish_reason"] == "stop"
    assert response["model"] == "gpt-x"
    assert record["metadata"]["provider"] == "openai"  # from gen_ai.system


def test_choice_event_with_plain_content_and_json_body(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {"gen_ai.operation.name": "chat"},
            events=[
                ("gen_ai.user.message", {"content": "one"}),
                ("gen_ai.choice", {"content": "first answer"}),
            ],
            name="plain",
        )
        llm_span(
            tracer,
            {"gen_ai.operation.name": "chat"},
            events=[
                ("gen_ai.user.message", {"content": "two"}),
                (
                    "gen_ai.choice",
                    {
                        "body": json.dumps(
                            {
                                "index": 0,
                                "finish_reason": "tool_calls",
                                "message": {"content": [{"type": "text", "text": "second"}]},
                            }
                        )
                    },
                ),
            ],
            name="body",
        )

    by_name = {r["metadata"]["span_name"]: r for r in convert(build, encoding).records}
    assert by_name["plain"]["responses"][0]["text"] == "first answer"
    assert by_name["plain"]["responses"][0]["finish_reason"] is None
    assert by_name["plain"]["responses"][0]["model"] == "unknown"
    assert by_name["body"]["responses"][0]["text"] == "second"
    assert by_name["body"]["responses"][0]["finish_reason"] == "tool_calls"


# --------------------------------------------------------------------------------------------
# Input shape 3: OpenLLMetry legacy indexed attributes


def test_legacy_indexed_attributes(encoding: str) -> None:
    attributes: dict[str, Any] = {
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.usage.prompt_tokens": 11,
        "gen_ai.usage.completion_tokens": 3,
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Done.",
        "gen_ai.completion.0.finish_reason": "end_turn",
    }
    turns = ["system", "user", "assistant", "user", "human", "developer", "user", "user"]
    turns += ["user", "user", "user"]  # 11 turns: index 10 must sort after index 2
    for i, role in enumerate(turns):
        attributes[f"gen_ai.prompt.{i}.role"] = role
        attributes[f"gen_ai.prompt.{i}.content"] = f"turn {i}"
    attributes["gen_ai.prompt.4.content"] = json.dumps(
        [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}}]
    )

    record = only_record(lambda t: llm_span(t, attributes), encoding)
    contents = [m["content"] for m in record["messages"]]
    assert contents == [f"turn {i}" if i != 4 else "look at" for i in range(11)]
    roles = [m["role"] for m in record["messages"]]
    assert roles[:6] == ["system", "user", "assistant", "user", "user", "system"]
    [response] = record["responses"]
    assert response["text"] == "Done."
    assert response["finish_reason"] == "end_turn"
    assert response["usage"] == {"prompt_tokens": 11, "completion_tokens": 3}
    assert record["metadata"]["provider"] == "Anthropic"


def test_unknown_roles_become_user(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "narrator", "parts": [{"type": "text", "content": "Once..."}]}]
                ),
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Once..."}]


# --------------------------------------------------------------------------------------------
# No output, trailing assistant message


def test_no_output_gives_no_responses(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(tracer, {"gen_ai.operation.name": "chat", "gen_ai.prompt.0.content": "Hi"})

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Hi"}]
    assert record["responses"] == []


def test_trailing_assistant_input_message_becomes_the_response(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "user", "parts": [{"type": "text", "content": "Q"}]},
                        {"role": "assistant", "parts": [{"type": "text", "content": "A"}]},
                    ]
                ),
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Q"}]
    [response] = record["responses"]
    assert (response["text"], response["model"], response["finish_reason"]) == ("A", "m", "stop")


# --------------------------------------------------------------------------------------------
# Flow, tags, ignored spans, dedupe


def _prompt(flow: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "Hi",
    }
    if flow is not None:
        attributes["loopline.flow"] = flow
    return attributes


def test_flow_from_span_then_resource_then_default(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(tracer, _prompt("span-flow"), name="on-span")
        llm_span(tracer, _prompt(), name="inherits")

    with_resource = convert(build, encoding, resource={"loopline.flow": "resource-flow"})
    flows = {r["metadata"]["span_name"]: r["flow"] for r in with_resource.records}
    assert flows == {"on-span": "span-flow", "inherits": "resource-flow"}

    without_resource = convert(build, encoding, default_flow="fallback")
    flows = {r["metadata"]["span_name"]: r["flow"] for r in without_resource.records}
    assert flows == {"on-span": "span-flow", "inherits": "fallback"}


def test_tags_as_comma_string(encoding: str) -> None:
    attributes = {**_prompt(), "loopline.tags": "a, b,,c "}
    record = only_record(lambda t: llm_span(t, attributes), encoding)
    assert record["tags"] == ["a", "b", "c"]


def test_non_llm_and_content_free_spans_are_counted(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("http GET /chat", attributes={"http.method": "GET"}):
            with tracer.start_as_current_span("db query"):
                pass
            # Instrumented LLM call with content capture off: metadata only.
            llm_span(
                tracer,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "m",
                    "gen_ai.usage.input_tokens": 3,
                    "gen_ai.input.messages": "[]",
                },
                name="chat m",
            )
            llm_span(tracer, _prompt(), name="captured")

    conversion = convert(build, encoding)
    assert conversion.ignored_not_llm == 2
    assert conversion.ignored_no_content == 1
    assert [r["metadata"]["span_name"] for r in conversion.records] == ["captured"]


def test_same_span_gives_the_same_record_id() -> None:
    request = export_request(lambda t: llm_span(t, _prompt()))
    ids = {
        spans_to_records(over_the_wire(request, enc), "f").records[0]["record_id"]
        for enc in ENCODINGS * 2
    }
    assert len(ids) == 1
    [record_id] = ids
    assert len(record_id) == 32 and int(record_id, 16) >= 0

    other = export_request(lambda t: llm_span(t, _prompt()))
    assert spans_to_records(other, "f").records[0]["record_id"] != record_id


def test_empty_request_gives_nothing() -> None:
    for body, content_type in [(b"", "application/x-protobuf"), (b"{}", "application/json")]:
        conversion = spans_to_records(parse_export_request(body, content_type), "f")
        assert conversion == SpanConversion(records=[], ignored_not_llm=0, ignored_no_content=0)


# --------------------------------------------------------------------------------------------
# OTLP/JSON as other SDKs write it (hex ids, int64 as strings, enum as int, AnyValue variants)


def test_hand_written_otlp_json() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "node-app"}},
                        {"key": "loopline.flow", "value": {"stringValue": "js-flow"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "@opentelemetry/instrumentation-openai"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "",
                                "name": "chat gpt",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661500000000",
                                "attributes": [
                                    {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "g"}},
                                    {
                                        "key": "gen_ai.request.max_tokens",
                                        "value": {"intValue": "64"},
                                    },
                                    {
                                        "key": "gen_ai.request.temperature",
                                        "value": {"doubleValue": 0},
                                    },
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 9}},
                                    {
                                        "key": "gen_ai.usage.output_tokens",
                                        "value": {"intValue": "2"},
                                    },
                                    {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
                                    {
                                        "key": "loopline.tags",
                                        "value": {
                                            "arrayValue": {"values": [{"stringValue": "web"}]}
                                        },
                                    },
                                    {
                                        "key": "some.unknown",
                                        "value": {"kvlistValue": {"values": []}},
                                    },
                                ],
                                "events": [
                                    {
                                        "name": "gen_ai.user.message",
                                        "timeUnixNano": "1544712660100000000",
                                        "attributes": [
                                            {"key": "content", "value": {"stringValue": "Hey"}}
                                        ],
                                    }
                                ],
                                "status": {},
                                "someFutureField": 1,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = parse_export_request(json.dumps(body).encode(), "application/json")
    [record] = spans_to_records(request, "default").records
    Record.model_validate(record)
    assert record["metadata"]["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert record["metadata"]["span_id"] == "eee19b7ec3c1b174"
    assert record["metadata"]["service_name"] == "node-app"
    assert record["flow"] == "js-flow"
    assert record["tags"] == ["web"]
    assert record["messages"] == [{"role": "user", "content": "Hey"}]
    assert record["responses"] == []
    assert record["created_at"] == "2018-12-13T14:51:00+00:00"


# --------------------------------------------------------------------------------------------
# Malformed bodies and responses


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"\xff\xff\xff\xff", "application/x-protobuf", "invalid OTLP protobuf"),
        (b"not json", "application/json", "invalid OTLP/JSON"),
        (b"\xff\xfe", "application/json", "invalid OTLP/JSON"),
        (b"[1, 2]", "application/json", "expected an object"),
        (b'{"resourceSpans": "nope"}', "application/json", "invalid OTLP/JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz!"}]}]}]}',
            "application/json",
            "not 32 hex characters",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}',
            "application/json",
            "spanId 'abcd' is not 16 hex characters",
        ),
        (
            b'{"resource_spans": [{"scope_spans": [{"spans": [{"trace_id": 7}]}]}]}',
            "application/json",
            "trace_id must be a hex string",
        ),
        (gzip.compress(b"{}"), "application/json", "gzip"),
        (b"{}", "text/plain", "unsupported OTLP content type"),
    ],
)
def test_malformed_bodies_raise(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OTLPFormatError, match=message) as caught:
        parse_export_request(body, content_type)
    assert isinstance(caught.value, ValueError)


def test_export_response_protobuf() -> None:
    body, content_type = export_response("application/x-protobuf")
    assert content_type == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(body)
    assert not response.HasField("partial_success")


def test_export_response_json() -> None:
    body, content_type = export_response("application/json; charset=utf-8")
    assert content_type == "application/json"
    response = json_format.Parse(body.decode(), ExportTraceServiceResponse())
    assert not response.HasField("partial_success")
    assert json.loads(body) == {}


def test_json_ids_in_protobuf_base64_mapping_are_tolerated() -> None:
    request = export_request(lambda t: llm_span(t, _prompt()))
    body = json_format.MessageToJson(request).encode()  # ids as base64, not OTLP/JSON hex
    [record] = spans_to_records(parse_export_request(body, "application/json"), "f").records
    [span] = request.resource_spans[0].scope_spans[0].spans
    assert record["metadata"]["trace_id"] == span.trace_id.hex()
    assert record["metadata"]["span_id"] == span.span_id.hex()
