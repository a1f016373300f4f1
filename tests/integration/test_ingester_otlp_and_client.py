"""OTLP traces from the real opentelemetry-sdk exporter, and the Python client, end to end."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import httpx
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopline.client import LooplineClient
from shared.events import RECORDS_INGESTED
from shared.settings import Settings
from tests.support.service_helpers import ADMIN_KEY, SUPPORT_KEY, read_records


def span_record_id(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    key = f"{context.trace_id:032x}:{context.span_id:016x}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def llm_spans(provider: TracerProvider, question: str) -> None:
    tracer = provider.get_tracer("my-llm-app")
    # "handle request" is not an LLM call; "chat qwen" is.
    with (
        tracer.start_as_current_span("handle request"),
        tracer.start_as_current_span("chat qwen") as span,
    ):
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "qwen-request")
        span.set_attribute("gen_ai.response.model", "qwen-2.5-served")
        span.set_attribute("gen_ai.usage.input_tokens", 21)
        span.set_attribute("gen_ai.usage.output_tokens", 7)
        span.set_attribute(
            "gen_ai.input.messages",
            json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                    {"role": "user", "parts": [{"type": "text", "content": question}]},
                ]
            ),
        )
        span.set_attribute(
            "gen_ai.output.messages",
            json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "A distributed log."}],
                        "finish_reason": "stop",
                    }
                ]
            ),
        )


async def test_otlp_exporter_spans_become_records(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    captured = InMemorySpanExporter()
    exporter = OTLPSpanExporter(
        endpoint=f"{api.base_url}/v1/traces", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = (await api.get("/v1/stats")).json()
    question = f"What is Kafka? {uuid.uuid4().hex}"
    llm_spans(provider, question)
    provider.shutdown()

    [llm_span] = [s for s in captured.get_finished_spans() if s.name == "chat qwen"]
    record_id = span_record_id(llm_span)
    [record] = await read_records(ingest_settings.kafka, RECORDS_INGESTED, {record_id})
    assert record.flow == "support"  # the default flow
    assert [(m.role.value, m.content) for m in record.messages or []] == [
        ("system", "Be brief."),
        ("user", question),
    ]
    [response] = record.responses
    assert response.text == "A distributed log."
    assert response.model == "qwen-2.5-served"
    assert response.source == "app"
    assert response.usage is not None and response.usage.prompt_tokens == 21
    assert response.usage.completion_tokens == 7
    assert record.metadata["service_name"] == "support-bot"
    after = (await api.get("/v1/stats")).json()
    assert after["otlp_spans_not_llm"] == before["otlp_spans_not_llm"] + 1


async def test_otlp_json_and_errors(api: httpx.AsyncClient, ingest_settings: Settings) -> None:
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    llm_spans(provider, f"json question {uuid.uuid4().hex}")
    spans = captured.get_finished_spans()
    payload = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in payload["resourceSpans"]:  # OTLP/JSON carries ids as hex
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "x-loopline-flow": "sampled"}
    response = await api.post("/v1/traces", json=payload, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    record_id = span_record_id(next(s for s in spans if s.name == "chat qwen"))
    found = await read_records(ingest_settings.kafka, RECORDS_INGESTED, {record_id}, within_s=5)
    unrouted = await read_records(
        ingest_settings.kafka, "records.unrouted", {record_id}, within_s=5
    )
    [record] = found + unrouted  # the flow samples: it is on exactly one of the two
    assert record.flow == "sampled"

    bad = await api.post(
        "/v1/traces",
        content=b"\xff\x00garbage",
        headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/x-protobuf"},
    )
    assert bad.status_code == 400
    wrong_type = await api.post(
        "/v1/traces",
        content=b"x",
        headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    scoped = await api.post(
        "/v1/traces",
        json=payload,
        headers={"authorization": f"Bearer {SUPPORT_KEY}", "x-loopline-flow": "sampled"},
    )
    assert scoped.status_code == 403


async def test_client_batches_in_background_and_flushes(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    questions = [f"client question {i} {uuid.uuid4().hex}" for i in range(25)]
    client = LooplineClient(
        str(api.base_url),
        api_key=SUPPORT_KEY,
        flow="support",
        batch_size=10,
        flush_interval_s=0.2,
    )
    ids = [f"client-{uuid.uuid4().hex[:12]}" for _ in questions]
    for record_id, question in zip(ids, questions, strict=True):
        assert client.log(
            record_id=record_id,
            instruction=question,
            responses=[{"text": "ok", "model": "app", "source": "app"}],
        )
    assert await client.aflush(timeout_s=30)
    client.close()
    assert client.sent == 25 and client.dropped == 0 and client.failed == 0
    arrived = await read_records(ingest_settings.kafka, RECORDS_INGESTED, set(ids))
    assert sorted(r.record_id for r in arrived) == sorted(ids)
    assert not client.log(instruction="after close")  # counted as dropped, not raised
    assert client.dropped == 1


def test_client_drops_when_the_queue_is_full_and_never_raises() -> None:
    client = LooplineClient(
        "http://127.0.0.1:9",
        max_queue=5,
        flush_interval_s=5,
        max_retries=0,
        timeout_s=0.5,
        batch_size=1000,
    )
    results = [client.log(instruction=f"q{i}") for i in range(20)]
    assert results.count(True) <= 6  # the background thread may have taken one batch out
    assert client.dropped == results.count(False) >= 14
    client.close(timeout_s=5)
    assert client.failed == results.count(True)  # unreachable endpoint: counted, not raised
