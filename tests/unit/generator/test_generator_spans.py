"""The generator's LLM calls are GenAI spans in the record's trace: children of the span the
generator opens for the record, one per generation, named after the model asked for; the
candidates carry the completions' ids the spans name (the judge's evaluation events use them)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from devstack.scripted_llm import ScriptedLLM
from services.generator.app import register
from shared.broker import build_broker
from shared.events import RECORDS_INGESTED, RECORDS_JUDGED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import LLMSettings, Settings, TelemetrySettings
from shared.telemetry import context_from_traceparent
from tests.support.spans import kept_spans, spans_about, trace_id_of

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CONTENT_KEYS = {"gen_ai.input.messages", "gen_ai.output.messages", "input.value", "output.value"}


async def generate_one(capture_content: bool) -> tuple[Record, list[ReadableSpan], int]:
    """Run one record through the generator; (its output, the spans about it, chat spans)."""
    with kept_spans() as (provider, exporter):
        async with ScriptedLLM() as server:
            port = urlsplit(server.base_url).port or 0
            settings = Settings(
                llm=LLMSettings(base_url=server.base_url),
                telemetry=TelemetrySettings(capture_content=capture_content),
            )
            broker, dead_letters = build_broker(settings, "generator", provider)
            flows = parse_flows(
                {
                    "flows": {
                        "compare": {
                            "generate": [
                                {"plugin": "openai", "options": {"model": "small"}},
                                {"plugin": "openai", "options": {"model": "large"}},
                            ]
                        }
                    }
                },
                "test",
            )
            ctx = ServiceContext(
                name="generator",
                settings=settings,
                flows=flows,
                broker=broker,
                dead_letters=dead_letters,
                tracer_provider=provider,
            )
            generated: asyncio.Queue[Record] = asyncio.Queue()

            @ctx.broker.subscriber(RECORDS_JUDGED, group_id="reader")
            async def read(message: KafkaMessage) -> None:
                generated.put_nowait(Record.model_validate_json(message.body))

            register(ctx)
            async with TestKafkaBroker(ctx.broker) as test_broker:
                record = Record(record_id="r1", flow="compare", instruction="Reverse a string.")
                upstream = trace.get_current_span(context_from_traceparent(TRACEPARENT))
                with trace.use_span(upstream):  # ingested in the record's trace
                    await test_broker.publish(
                        record.to_bytes(), topic=RECORDS_INGESTED, key=record.record_id.encode()
                    )
                out = await asyncio.wait_for(generated.get(), timeout=10)
            for close in ctx.closers:
                await close()
        chat = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
        return out, [*spans_about(exporter, "r1"), *chat], port


async def test_each_generation_is_a_chat_span_under_the_records_span() -> None:
    out, spans, port = await generate_one(capture_content=False)
    [record_span] = [s for s in spans if (s.attributes or {}).get("loopline.record_id") == "r1"]
    chat = sorted((s for s in spans if s.name.startswith("chat ")), key=lambda s: s.name)
    assert [s.name for s in chat] == ["chat large", "chat small"]
    for span in chat:
        attributes = dict(span.attributes or {})
        assert span.kind == SpanKind.CLIENT
        assert span.context.trace_id == trace_id_of(TRACEPARENT)
        assert span.parent is not None and span.parent.span_id == record_span.context.span_id
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"]
        assert isinstance(attributes["gen_ai.usage.input_tokens"], int)
        assert isinstance(attributes["gen_ai.usage.output_tokens"], int)
        assert attributes["server.port"] == port
        assert not CONTENT_KEYS & set(attributes)
    span_ids = {str((s.attributes or {})["gen_ai.response.id"]) for s in chat}
    assert {c.response_id for c in out.responses} == span_ids
    assert len(span_ids) == 2


async def test_content_is_on_the_spans_when_enabled() -> None:
    _, spans, _ = await generate_one(capture_content=True)
    chat = [s for s in spans if s.name.startswith("chat ")]
    assert len(chat) == 2
    for span in chat:
        attributes = dict(span.attributes or {})
        assert set(attributes) >= CONTENT_KEYS
        assert "Reverse a string." in str(attributes["gen_ai.input.messages"])
