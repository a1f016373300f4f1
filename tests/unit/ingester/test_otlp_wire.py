"""The OTLP wire format: OTLP/JSON as other SDKs write it, malformed bodies refused with a
reason, export responses in either encoding, and ids in protobuf's base64 JSON mapping."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from services.ingester.otlp.genai import spans_to_records
from services.ingester.otlp.wire import OTLPFormatError, export_response, parse_export_request
from shared.events import Record
from tests.unit.ingester.otlp_export import export_request, llm_span, prompt_attributes

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
    request = export_request(lambda t: llm_span(t, prompt_attributes()))
    body = json_format.MessageToJson(request).encode()  # ids as base64, not OTLP/JSON hex
    [record] = spans_to_records(parse_export_request(body, "application/json"), "f").records
    [span] = request.resource_spans[0].scope_spans[0].spans
    assert record["metadata"]["trace_id"] == span.trace_id.hex()
    assert record["metadata"]["span_id"] == span.span_id.hex()
