"""Judgments as spans with `gen_ai.evaluation.result` events: one `judge {rubric}` span per
judgment in the current trace, parent of the judge's GenAI chat spans, with an event per judged
response and criterion (name, score, label, explanation, the judged response's id); and the
judge service's spans under the record's span."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from devstack.scripted_llm import ScriptedLLM as ScriptedServer
from services.judge.app import register
from services.judge.judging import judge_record
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from services.judge.rubrics.pairwise import PairwiseRubric
from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_JUDGED, CandidateResponse, Record
from shared.flows import parse_flows
from shared.llm.client import OpenAICompatibleLLM
from shared.llm.telemetry import LLMTelemetry
from shared.service import ServiceContext
from shared.settings import LLMSettings, Settings
from shared.telemetry import context_from_traceparent
from tests.support.spans import kept_spans, spans_about, trace_id_of
from tests.unit.judge.scripted_judge import ScriptedLLM, multi_aspect_marker

EVENT = "gen_ai.evaluation.result"
VERDICT = json.dumps({"rationale": "A is shorter", "winner": "A"})
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def generated(record_id: str = "r1", texts: tuple[str, ...] = ("s[::-1]", "a loop")) -> Record:
    return Record(
        record_id=record_id,
        flow="f",
        instruction="Reverse a string.",
        responses=[
            CandidateResponse(text=text, model=f"gen-{i}", response_id=f"chatcmpl-gen-{i}")
            for i, text in enumerate(texts)
        ],
    )


def events_of(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == EVENT]


def named(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


async def test_a_pairwise_judgment_is_a_span_with_an_evaluation_event_per_response() -> None:
    with kept_spans() as (provider, exporter):
        async with ScriptedServer(responder=lambda _: VERDICT) as server:
            llm = OpenAICompatibleLLM(server.base_url, "judge-model")
            llm.instrument(LLMTelemetry(provider, capture_content=True))
            async with llm:
                with provider.get_tracer("test").start_as_current_span("record") as parent:
                    [judgment] = await judge_record(generated(), PairwiseRubric(), llm)
        spans = list(exporter.get_finished_spans())

    [judge] = named(spans, "judge ")
    [chat] = named(spans, "chat ")
    assert judge.name == "judge pairwise"
    assert judge.parent is not None and judge.parent.span_id == parent.get_span_context().span_id
    assert chat.parent is not None and chat.parent.span_id == judge.context.span_id
    assert chat.kind == SpanKind.CLIENT
    assert (chat.attributes or {})["gen_ai.request.model"] == "judge-model"
    assert (judge.attributes or {})["loopline.record_id"] == "r1"
    assert (judge.attributes or {})["loopline.judge.status"] == "ok"

    preferred = judgment.preferred  # the response shown as "A", whichever the shuffle put there
    assert preferred is not None
    events = sorted(events_of(judge), key=lambda e: int(e["loopline.response.index"]))
    assert [
        (
            e["gen_ai.evaluation.name"],
            e["gen_ai.evaluation.score.value"],
            e["gen_ai.evaluation.score.label"],
            e["gen_ai.evaluation.explanation"],
            e["gen_ai.response.id"],
        )
        for e in events
    ] == [
        (
            "pairwise",
            1.0 if i == preferred else 0.0,
            "preferred" if i == preferred else "rejected",
            "A is shorter",
            f"chatcmpl-gen-{i}",
        )
        for i in range(2)
    ]


async def test_ratings_give_an_event_per_response_and_aspect() -> None:
    aspects = ["helpfulness", "honesty"]
    with kept_spans() as (provider, exporter):
        llm = ScriptedLLM(lambda call: multi_aspect_marker(call, aspects, per_aspect=True))
        llm.telemetry = LLMTelemetry(provider, capture_content=True)
        texts = ("answer 0", "answer 1 MARK")
        await judge_record(generated(texts=texts), MultiAspectRubric(aspects, "per-aspect"), llm)
        [judge] = named(list(exporter.get_finished_spans()), "judge ")

    found = {
        (e["loopline.response.index"], e["gen_ai.evaluation.name"]): e for e in events_of(judge)
    }
    assert set(found) == {(i, a) for i in range(2) for a in aspects}
    for (index, aspect), event in found.items():
        assert event["gen_ai.evaluation.score.value"] == (5.0 if index == 1 else 1.0)
        assert event["gen_ai.evaluation.explanation"].startswith(f"{aspect} of ")
        assert event["gen_ai.response.id"] == f"chatcmpl-gen-{index}"
        assert event["loopline.judge.rubric"] == "multi-aspect"
        assert "gen_ai.evaluation.score.label" not in event


async def test_a_failed_judgment_reports_its_error_type_and_no_score() -> None:
    with kept_spans() as (provider, exporter):
        llm = ScriptedLLM(lambda call: "no JSON here")
        llm.telemetry = LLMTelemetry(provider)
        [judgment] = await judge_record(generated(), PairwiseRubric(), llm)
        [judge] = named(list(exporter.get_finished_spans()), "judge ")

    assert judgment.status == "failed"
    assert (judge.attributes or {})["error.type"] == "invalid_output"
    events = events_of(judge)
    assert len(events) == 2
    for event in events:
        assert event["error.type"] == "invalid_output"
        assert "no JSON object" in event["gen_ai.evaluation.explanation"]
        assert "gen_ai.evaluation.score.value" not in event


async def test_the_judge_service_judges_in_the_records_trace() -> None:
    with kept_spans() as (provider, exporter):
        async with ScriptedServer(responder=lambda _: VERDICT) as server:
            settings = Settings(llm=LLMSettings(base_url=server.base_url, model="judge-model"))
            broker, dead_letters = build_broker(settings, "judge", provider)
            flows = {"f": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}
            ctx = ServiceContext(
                name="judge",
                settings=settings,
                flows=parse_flows({"flows": flows}, "test"),
                broker=broker,
                dead_letters=dead_letters,
                tracer_provider=provider,
            )
            judged: asyncio.Queue[Record] = asyncio.Queue()

            @ctx.broker.subscriber(RECORDS_JUDGED, group_id="reader")
            async def read(message: KafkaMessage) -> None:
                judged.put_nowait(Record.model_validate_json(message.body))

            register(ctx)
            async with TestKafkaBroker(ctx.broker) as test_broker:
                upstream = trace.get_current_span(context_from_traceparent(TRACEPARENT))
                with trace.use_span(upstream):  # generated in the record's trace
                    await test_broker.publish(
                        generated().to_bytes(), topic=RECORDS_GENERATED, key=b"r1"
                    )
                out = await asyncio.wait_for(judged.get(), timeout=10)
            for close in ctx.closers:
                await close()
        spans = list(exporter.get_finished_spans())
        [record_span] = named(spans_about(exporter, "r1"), "judge process")

    assert [j.status for j in out.judgments] == ["ok"]
    [judge] = named(spans, "judge pairwise")
    [chat] = named(spans, "chat judge-model")
    assert {s.context.trace_id for s in (record_span, judge, chat)} == {trace_id_of(TRACEPARENT)}
    assert judge.parent is not None and judge.parent.span_id == record_span.context.span_id
    assert chat.parent is not None and chat.parent.span_id == judge.context.span_id
    assert chat.status.status_code == StatusCode.UNSET
    assert {e["gen_ai.response.id"] for e in events_of(judge)} == {
        "chatcmpl-gen-0",
        "chatcmpl-gen-1",
    }


async def test_without_content_capture_the_judges_rationale_stays_out_of_the_trace() -> None:
    # A rationale quotes the prompt and the responses: it is content, recorded only with
    # LOOPLINE_TELEMETRY__CAPTURE_CONTENT, like the messages of the LLM calls.
    with kept_spans() as (provider, exporter):
        llm = ScriptedLLM(lambda call: VERDICT)
        llm.telemetry = LLMTelemetry(provider)
        [judgment] = await judge_record(generated(), PairwiseRubric(), llm)
        [judge] = named(list(exporter.get_finished_spans()), "judge ")

    assert judgment.rationale == "A is shorter"
    events = events_of(judge)
    assert sorted(e["gen_ai.evaluation.score.value"] for e in events) == [0.0, 1.0]
    assert all("gen_ai.evaluation.explanation" not in e for e in events)
