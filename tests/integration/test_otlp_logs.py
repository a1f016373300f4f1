"""An app instrumented with the official OpenAI instrumentation, as a user runs it: the real
`openai` client calls the local stack's LLM server, and the app's real OTLP/HTTP exporters (batch
processors, as `opentelemetry-instrument` sets them up) send its traces to the ingester's
`/v1/traces` and its logs to `/v1/logs`. With the message content in log events (EVENT_ONLY) as
with it on the span (SPAN_ONLY), each call is a record on `records.ingested`."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass

import httpx
import openai
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared.events import RECORDS_INGESTED
from shared.settings import Settings
from tests.support.genai_instrumentation import instrumented
from tests.support.service_helpers import ADMIN_KEY, read_records


@dataclass
class Call:
    question: str
    answer: str
    model: str  # as the server named it
    record_id: str


async def _ask(base_url: str, model: str, question: str) -> tuple[str, str]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="no-key", max_retries=2) as client:
        response = await client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": question},
            ],
            max_tokens=24,
            temperature=0,
        )
    return response.choices[0].message.content or "", response.model


def run_app(mode: str, ingester_url: str, settings: Settings, question: str) -> Call:
    """The instrumented app, in a thread of its own (its exporters post to the ingester, which
    runs on the test's event loop): one call, then its providers shut down (flushing)."""
    auth = {"authorization": f"Bearer {ADMIN_KEY}"}
    resource = Resource.create({"service.name": "support-bot"})
    captured = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{ingester_url}/v1/traces", headers=auth))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{ingester_url}/v1/logs", headers=auth))
    )
    with instrumented(mode, tracer_provider, logger_provider):
        answer, model = asyncio.run(_ask(settings.llm.base_url, settings.llm.model, question))
    # The span first: without its content (EVENT_ONLY), it waits for its events.
    tracer_provider.shutdown()
    logger_provider.shutdown()
    [span] = [s for s in captured.get_finished_spans() if s.kind == SpanKind.CLIENT]
    context = span.get_span_context()
    assert context is not None
    key = f"{context.trace_id:032x}:{context.span_id:016x}"
    return Call(question, answer, model, hashlib.sha256(key.encode()).hexdigest()[:32])


async def test_content_in_log_events_or_on_spans_makes_records(
    api: httpx.AsyncClient, ingest_settings: Settings
) -> None:
    before = (await api.get("/v1/stats")).json()
    url = str(api.base_url).rstrip("/")
    calls = {}
    for mode in ("EVENT_ONLY", "SPAN_ONLY"):
        question = f"What is Apache Kafka? ({mode} {uuid.uuid4().hex[:8]})"
        calls[mode] = await asyncio.to_thread(run_app, mode, url, ingest_settings, question)
        assert calls[mode].answer, mode
    found = await read_records(
        ingest_settings.kafka, RECORDS_INGESTED, {call.record_id for call in calls.values()}
    )
    by_id = {record.record_id: record for record in found}
    assert len(found) == len(by_id) == 2, found  # one record per call
    for mode, call in calls.items():
        record = by_id[call.record_id]
        assert record.flow == "support", mode  # the ingester's default flow
        assert [(m.role.value, m.content) for m in record.messages or []] == [
            ("system", "Answer in one short sentence."),
            ("user", call.question),
        ], mode
        [response] = record.responses
        assert (response.text, response.model, response.source) == (
            call.answer,
            call.model,
            "app",
        ), mode
        assert response.usage is not None and response.usage.completion_tokens > 0, mode
        assert record.metadata["service_name"] == "support-bot", mode
    after = (await api.get("/v1/stats")).json()
    assert after["otlp_spans_without_content"] == before["otlp_spans_without_content"]
    assert after["otlp_spans_held"] == before["otlp_spans_held"] + 1  # EVENT_ONLY's span waited
    assert after["otlp_join_waiting"] == 0
