"""Hypothesis-driven OTLP bodies against `/v1/traces`, the service wired as `register` wires it
on FastStream's test broker: random export requests (protobuf or OTLP/JSON), sent as they are,
mangled (truncated, bytes flipped, values replaced) and compressed or not (gzip, deflate, raw
deflate, a corrupt stream). Never a 5xx; a 200 is a real OTLP answer in the request's encoding;
every span of an intact request is accounted for: ingested (then published, a duplicate, or a
rejected span of the partial success) or counted as ignored.

100 examples by default; `LOOPLINE_FUZZ_EXAMPLES=1000` for the long form.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.fuzz.ingester.wiring import WiredIngester, wire_ingester

EXAMPLES = int(os.environ.get("LOOPLINE_FUZZ_EXAMPLES", "100"))
FLOWS = ["default", "plain", "near", "no-such-flow"]

text = st.text(max_size=40)
prompt_text = st.one_of(text, st.just("mail ann@example.com"), st.just("x" * 3000))


def any_value(depth: int = 3) -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        text.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=16).map(lambda v: AnyValue(bytes_value=v)),
    )
    if depth == 0:
        return scalars
    inner = any_value(depth - 1)

    def array(values: list[AnyValue]) -> AnyValue:
        value = AnyValue()
        value.array_value.values.extend(values)
        return value

    def kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
        value = AnyValue()
        value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
        return value

    return st.one_of(
        scalars,
        st.lists(inner, max_size=3).map(array),
        st.lists(st.tuples(text, inner), max_size=3).map(kvlist),
    )


@dataclass
class Span:
    llm: bool
    prompt: str | None
    flow: str | None
    extra: list[tuple[str, AnyValue]]
    trace_id: bytes
    span_id: bytes


spans = st.builds(
    Span,
    llm=st.booleans(),
    prompt=st.none() | prompt_text,
    flow=st.none() | st.sampled_from(FLOWS),
    extra=st.lists(
        st.tuples(st.sampled_from(["gen_ai.system", "app.x", "k"]), any_value()), max_size=3
    ),
    # Mostly well-formed ids (16 and 8 bytes), sometimes any length.
    trace_id=st.one_of(*[st.binary(min_size=16, max_size=16)] * 3, st.binary(max_size=20)),
    span_id=st.one_of(*[st.binary(min_size=8, max_size=8)] * 3, st.binary(max_size=10)),
)


def export(generated: list[list[Span]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for scope in generated:
        scope_spans = request.resource_spans.add().scope_spans.add()
        for span in scope:
            out = scope_spans.spans.add(name="chat", trace_id=span.trace_id, span_id=span.span_id)
            attributes: list[tuple[str, AnyValue]] = list(span.extra)
            if span.llm:
                attributes.append(("gen_ai.operation.name", AnyValue(string_value="chat")))
            if span.prompt is not None:
                attributes.append(("gen_ai.prompt.0.content", AnyValue(string_value=span.prompt)))
            if span.flow is not None:
                attributes.append(("loopline.flow", AnyValue(string_value=span.flow)))
            out.attributes.extend(KeyValue(key=k, value=v) for k, v in attributes)
    return request


def hex_ids(node: Any) -> Any:
    """protobuf's JSON mapping writes ids in base64; OTLP/JSON in hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = json_format.base64.b64decode(value).hex()
            else:
                hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids(item)
    return node


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str, str, bool, int]:
    """(body, content type, content encoding, intact, how many spans)."""
    generated = draw(st.lists(st.lists(spans, max_size=6), max_size=4))
    request = export(generated)
    kind = draw(st.sampled_from(["application/x-protobuf", "application/json"]))
    if kind == "application/json":
        document = hex_ids(json_format.MessageToDict(request))
        if draw(st.booleans()):  # a random value somewhere in the document
            path: list[Any] = []
            node: Any = document
            while isinstance(node, dict | list) and node and draw(st.booleans()):
                key = draw(
                    st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
                )
                path.append(key)
                node = node[key]
            if path:
                parent = document
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = draw(json_values)
        body = json.dumps(document).encode()
    else:
        body = request.SerializeToString()
    intact = True
    mangle = draw(st.sampled_from(["none", "none", "truncate", "flip", "random"]))
    if mangle == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
        intact = False
    elif mangle == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
        intact = False
    elif mangle == "random":
        body = draw(st.binary(max_size=200))
        intact = False
    encoding = draw(st.sampled_from(["", "gzip", "deflate", "raw-deflate", "corrupt-gzip"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, encoding = packer.compress(body) + packer.flush(), "deflate"
    elif encoding == "corrupt-gzip":
        packed = gzip.compress(body)
        body, encoding = packed[: len(packed) // 2], "gzip"
        intact = False
    total_spans = sum(len(scope) for scope in generated)
    return body, kind, encoding, intact and len(body) > 0, total_spans


ANSWERS: Counter[tuple[str, str, int]] = Counter()  # (content type, encoding, status) -> count


@pytest.fixture(scope="module")
async def wired() -> AsyncIterator[WiredIngester]:
    """The wired ingester on the test broker; prints what was answered (`pytest -s`)."""
    ingester = wire_ingester()
    async with TestKafkaBroker(ingester.context.broker):
        yield ingester
    for (kind, encoding, status), count in sorted(ANSWERS.items()):
        print(f"otlp fuzz: {kind} {encoding or 'identity'} -> {status}: {count}")
    published = sum(len(keys) for keys in ingester.published.values())
    print(f"otlp fuzz: {sum(ANSWERS.values())} requests, {published} records published")


@given(sent=bodies())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
async def test_otlp_bodies_never_get_a_server_error(
    wired: WiredIngester, sent: tuple[bytes, str, str, bool, int]
) -> None:
    body, kind, encoding, intact, total_spans = sent
    transport = httpx.ASGITransport(app=wired.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingester.test") as client:
        before = (await client.get("/v1/stats")).json()
        headers = {"content-type": kind, **({"content-encoding": encoding} if encoding else {})}
        response = await client.post("/v1/traces", content=body, headers=headers)
        ANSWERS[(kind, encoding, response.status_code)] += 1
        after = (await client.get("/v1/stats")).json()
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 413, 415), response.text
    if response.status_code != 200:
        assert after["received"] == before["received"]  # refused whole: nothing ingested
        return
    assert response.headers["content-type"].startswith(kind)
    answer = ExportTraceServiceResponse()
    if kind == "application/json":
        json_format.Parse(response.text, answer)
    else:
        answer.ParseFromString(response.content)
    delta = {key: after[key] - before[key] for key in after}
    handled = (
        delta["published"] + delta["duplicates"] + delta["near_duplicates"] + delta["rejected"]
    )
    assert handled == delta["received"], delta
    assert answer.partial_success.rejected_spans == delta["rejected"], (answer, delta)
    if intact and kind == "application/x-protobuf":  # every span ingested, counted ignored
        # or held for the log events that would carry its content
        ignored = (
            delta["otlp_spans_not_llm"]
            + delta["otlp_spans_without_content"]
            + delta["otlp_spans_held"]
        )
        assert delta["received"] + ignored == total_spans, (delta, total_spans)
