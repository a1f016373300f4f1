"""`/v1/traces`: compressed bodies (gzip, deflate) with a bound on what they inflate to, and the
span count and nesting checked before the body is parsed."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import httpx
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.trace import Tracer

from shared.settings import IngestSettings
from tests.unit.ingester.http_app import Ingester, ingester
from tests.unit.ingester.otlp_export import export_request, llm_span, otlp_json, prompt_attributes

PROTOBUF = "application/x-protobuf"


def spans(count: int) -> Any:
    def build(tracer: Tracer) -> None:
        for i in range(count):
            attributes = {**prompt_attributes("plain"), "gen_ai.prompt.0.content": f"Hi {i}"}
            llm_span(tracer, attributes, name=f"chat {i}")

    return export_request(build)


async def post_traces(ing: Ingester, body: bytes, kind: str, **headers: str) -> httpx.Response:
    return await ing.client.post(
        "/v1/traces", content=body, headers={"content-type": kind, **headers}
    )


def compressors() -> dict[str, Any]:
    def raw_deflate(data: bytes) -> bytes:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush()

    return {"gzip": gzip.compress, "deflate": zlib.compress, "raw-deflate": raw_deflate}


async def test_gzip_and_deflate_bodies_are_accepted_in_both_encodings() -> None:
    request = spans(2)
    bodies = {PROTOBUF: request.SerializeToString(), "application/json": otlp_json(request)}
    for name, compress in compressors().items():
        encoding = "deflate" if name == "raw-deflate" else name
        for kind, body in bodies.items():
            async with ingester() as ing:
                response = await post_traces(
                    ing, compress(body), kind, **{"content-encoding": encoding}
                )
                assert response.status_code == 200, (name, kind, response.text)
                assert len(ing.publisher.ids()) == 2, (name, kind)


async def test_what_a_body_inflates_to_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))  # 8 KB that inflate to 8 MiB
    assert len(bomb) < 10_000
    async with ingester(IngestSettings(max_body_bytes=1024 * 1024)) as ing:
        response = await post_traces(ing, bomb, PROTOBUF, **{"content-encoding": "gzip"})
        assert response.status_code == 413, response.text
        assert "1048576" in response.json()["detail"]

        corrupt = await post_traces(
            ing, b"\x1f\x8bnot gzip", PROTOBUF, **{"content-encoding": "gzip"}
        )
        assert corrupt.status_code == 400, corrupt.text

        brotli = await post_traces(ing, b"x", PROTOBUF, **{"content-encoding": "br"})
        assert brotli.status_code == 415, brotli.text
        assert "gzip" in brotli.json()["detail"]


async def test_the_span_count_is_checked_before_the_body_is_parsed() -> None:
    request = spans(6)
    async with ingester(IngestSettings(max_spans=5)) as ing:
        for kind, body in (
            (PROTOBUF, request.SerializeToString()),
            ("application/json", otlp_json(request)),
        ):
            response = await post_traces(ing, body, kind)
            assert response.status_code == 413, (kind, response.text)
            assert "limit of 5 spans" in response.json()["detail"], response.text
        # Counted, not parsed: what follows the sixth span is never read.
        truncated = request.SerializeToString() + b"\xff\xff\xff"
        response = await post_traces(ing, truncated, PROTOBUF)
        assert response.status_code == 413, response.text
        assert ing.publisher.calls == 0

        fine = await post_traces(ing, spans(5).SerializeToString(), PROTOBUF)
        assert fine.status_code == 200, fine.text
        assert len(ing.publisher.ids()) == 5


async def test_otlp_json_nested_past_any_parser_is_400() -> None:
    deep = '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}"
    async with ingester() as ing:
        response = await post_traces(ing, deep.encode(), "application/json")
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["detail"]


async def test_spans_that_make_bad_records_are_a_partial_success() -> None:
    def build(tracer: Tracer) -> None:
        llm_span(tracer, {**prompt_attributes("plain"), "gen_ai.prompt.0.content": "ok"})
        llm_span(tracer, {**prompt_attributes("no-such-flow")})

    body = export_request(build).SerializeToString()
    async with ingester() as ing:
        response = await post_traces(ing, body, PROTOBUF)
    assert response.status_code == 200, response.text
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "no-such-flow" in answer.partial_success.error_message
    assert len(ing.publisher.ids()) == 1
    assert json_format.MessageToDict(answer)  # a real OTLP answer
