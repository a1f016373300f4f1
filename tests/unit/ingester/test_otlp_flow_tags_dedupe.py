"""OTLP spans to records: the flow (span, then resource, then default), tags, spans that are
not LLM calls or carry no content (counted, not turned into records), and record ids stable
per span."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from services.ingester.otlp.genai import SpanConversion, spans_to_records
from services.ingester.otlp.wire import parse_export_request
from tests.unit.ingester.otlp_export import (
    ENCODINGS,
    convert,
    export_request,
    llm_span,
    only_record,
    over_the_wire,
    prompt_attributes,
)


def test_flow_from_span_then_resource_then_default(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(tracer, prompt_attributes("span-flow"), name="on-span")
        llm_span(tracer, prompt_attributes(), name="inherits")

    with_resource = convert(build, encoding, resource={"loopline.flow": "resource-flow"})
    flows = {r["metadata"]["span_name"]: r["flow"] for r in with_resource.records}
    assert flows == {"on-span": "span-flow", "inherits": "resource-flow"}

    without_resource = convert(build, encoding, default_flow="fallback")
    flows = {r["metadata"]["span_name"]: r["flow"] for r in without_resource.records}
    assert flows == {"on-span": "span-flow", "inherits": "fallback"}


def test_tags_as_comma_string(encoding: str) -> None:
    attributes = {**prompt_attributes(), "loopline.tags": "a, b,,c "}
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
            llm_span(tracer, prompt_attributes(), name="captured")

    conversion = convert(build, encoding)
    assert conversion.ignored_not_llm == 2
    assert conversion.ignored_no_content == 1
    assert [r["metadata"]["span_name"] for r in conversion.records] == ["captured"]


def test_same_span_gives_the_same_record_id() -> None:
    request = export_request(lambda t: llm_span(t, prompt_attributes()))
    ids = {
        spans_to_records(over_the_wire(request, enc), "f").records[0]["record_id"]
        for enc in ENCODINGS * 2
    }
    assert len(ids) == 1
    [record_id] = ids
    assert len(record_id) == 32 and int(record_id, 16) >= 0

    other = export_request(lambda t: llm_span(t, prompt_attributes()))
    assert spans_to_records(other, "f").records[0]["record_id"] != record_id


def test_empty_request_gives_nothing() -> None:
    for body, content_type in [(b"", "application/x-protobuf"), (b"{}", "application/json")]:
        conversion = spans_to_records(parse_export_request(body, content_type), "f")
        assert conversion == SpanConversion(records=[], ignored_not_llm=0, ignored_no_content=0)
