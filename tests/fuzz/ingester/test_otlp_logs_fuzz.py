"""Hypothesis-driven GenAI log events against `/v1/logs`, joined to an LLM span without content
sent to `/v1/traces` just before, the service wired as `register` wires it on FastStream's test
broker: content events (the details event, the older per-message and choice events) with random
attribute values and bodies, mixed with ordinary log records, sent as protobuf or OTLP/JSON.
Never a 5xx; the answer is a real OTLP logs response; the span is accounted for: its record
ingested (published, a duplicate or rejected in the partial success), counted without content,
or still waiting for the rest of its events.

100 examples by default; `LOOPLINE_FUZZ_EXAMPLES=1000` for the long form.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.fuzz.ingester.test_otlp_fuzz import any_value, hex_ids
from tests.fuzz.ingester.wiring import WiredIngester, wire_ingester

EXAMPLES = int(os.environ.get("LOOPLINE_FUZZ_EXAMPLES", "100"))
EVENT_NAMES = [
    "gen_ai.client.inference.operation.details",
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.choice",
    "",  # an ordinary log record
    "app.event",
]
ATTRIBUTE_KEYS = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.response.model",
    "gen_ai.request.temperature",
    "gen_ai.usage.input_tokens",
    "loopline.tags",
    "content",
    "index",
    "event.name",
]


def text_part(content: str) -> AnyValue:
    part = AnyValue()
    part.kvlist_value.values.extend(
        [
            KeyValue(key="type", value=AnyValue(string_value="text")),
            KeyValue(key="content", value=AnyValue(string_value=content)),
        ]
    )
    return part


def message(role: str, content: str) -> AnyValue:
    value = AnyValue()
    parts = AnyValue()
    parts.array_value.values.append(text_part(content))
    role_value = AnyValue(string_value=role)
    value.kvlist_value.values.extend(
        [KeyValue(key="role", value=role_value), KeyValue(key="parts", value=parts)]
    )
    return value


def messages(items: list[tuple[str, str]]) -> AnyValue:
    value = AnyValue()
    value.array_value.values.extend(message(role, content) for role, content in items)
    return value


roles = st.sampled_from(["user", "system", "assistant", "tool", "nobody"])
plausible = st.lists(st.tuples(roles, st.text(max_size=30)), max_size=3).map(messages)
values = st.one_of(plausible, any_value())
events = st.lists(
    st.tuples(
        st.sampled_from(EVENT_NAMES),
        st.lists(st.tuples(st.sampled_from(ATTRIBUTE_KEYS), values), max_size=4),
        st.none() | values,  # the body
        st.booleans(),  # carries the span's ids
    ),
    max_size=5,
)


@pytest.fixture(scope="module")
async def wired() -> AsyncIterator[WiredIngester]:
    ingester = wire_ingester()
    async with TestKafkaBroker(ingester.context.broker):
        yield ingester


def llm_span(trace_id: bytes, span_id: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    span = scope.spans.add(name="chat", trace_id=trace_id, span_id=span_id)
    span.attributes.append(KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="c")))
    return request


def log_events(
    generated: list[tuple[str, list[tuple[str, AnyValue]], AnyValue | None, bool]],
    trace_id: bytes,
    span_id: bytes,
) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for name, attributes, body, correlated in generated:
        record = scope.log_records.add(event_name=name)
        if correlated:
            record.trace_id, record.span_id = trace_id, span_id
        record.attributes.extend(KeyValue(key=k, value=v) for k, v in attributes)
        if body is not None:
            record.body.CopyFrom(body)
    return request


@given(
    generated=events,
    ids=st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8)),
    as_json=st.booleans(),
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
async def test_log_events_never_get_a_server_error(
    wired: WiredIngester,
    generated: list[tuple[str, list[tuple[str, AnyValue]], AnyValue | None, bool]],
    ids: tuple[bytes, bytes],
    as_json: bool,
) -> None:
    trace_id, span_id = ids
    key = (trace_id.hex(), span_id.hex())
    store = wired.app.state.otlp.store
    if key in store or store.made(key) or trace_id == bytes(16) or span_id == bytes(8):
        return  # ids seen before (or not a valid span context): nothing to account for
    transport = httpx.ASGITransport(app=wired.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingester.test") as client:
        before = (await client.get("/v1/stats")).json()
        traces = await client.post(
            "/v1/traces",
            content=llm_span(trace_id, span_id).SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert traces.status_code == 200, traces.text
        request = log_events(generated, trace_id, span_id)
        if as_json:
            kind = "application/json"
            body = json.dumps(hex_ids(json_format.MessageToDict(request))).encode()
        else:
            kind, body = "application/x-protobuf", request.SerializeToString()
        response = await client.post("/v1/logs", content=body, headers={"content-type": kind})
        after = (await client.get("/v1/stats")).json()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(kind)
    answer = ExportLogsServiceResponse()
    if as_json:
        json_format.Parse(response.text, answer)
    else:
        answer.ParseFromString(response.content)
    delta = {name: after[name] - before[name] for name in after}
    handled = (
        delta["published"] + delta["duplicates"] + delta["near_duplicates"] + delta["rejected"]
    )
    assert handled == delta["received"], delta
    waiting = 1 if key in store else 0
    assert delta["received"] + delta["otlp_spans_without_content"] + waiting == 1, delta
    uncorrelated = sum(
        1 for name, _, _, correlated in generated if not correlated and name.startswith("gen_ai.")
    )
    assert answer.partial_success.rejected_log_records >= uncorrelated
