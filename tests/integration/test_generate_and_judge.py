"""generator and judge against the real llama.cpp server (shape and plumbing, not quality),
and against a scripted endpoint for what a real one rarely does on demand."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import devstack as stack
from devstack.scripted_llm import ScriptedLLM, context_too_long, reply, status
from services.generator.app import SERVICE as GENERATOR
from services.judge.app import SERVICE as JUDGE
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, RECORDS_JUDGED, Record
from shared.flows import FlowsConfig, parse_flows
from shared.settings import LLMSettings, Settings
from tests.support.service_helpers import produce, read_dead_letters, read_records, running_service


def flows_for(scripted_url: str) -> FlowsConfig:
    return parse_flows(
        {
            "flows": {
                "gen-judge": {
                    "generate": [
                        {
                            "plugin": "openai",
                            "generations": 2,
                            "options": {"temperature": 0.8, "max_tokens": 48},
                        }
                    ],
                    "judge": {"plugin": "multi-aspect", "max_tokens": 900},
                    "generate_if_answered": False,  # keeps judging small on a 2-core CI box
                },
                "compare": {
                    "generate": [{"plugin": "openai", "options": {"max_tokens": 16}}],
                },
                "keep-app-answer": {
                    "generate": [{"plugin": "openai", "options": {"max_tokens": 16}}],
                    "generate_if_answered": False,
                },
                "pairwise-scripted": {
                    "judge": {
                        "plugin": "pairwise",
                        "repeats": 2,
                        "llm": {
                            "plugin": "openai",
                            "options": {"base_url": scripted_url, "model": "scripted-judge"},
                        },
                    },
                },
                "scripted": {
                    "generate": [
                        {
                            "plugin": "openai",
                            "options": {
                                "base_url": scripted_url,
                                "model": "scripted",
                                "max_retries": 1,
                                "backoff_initial_s": 0.01,
                                "timeout_s": 2,
                            },
                        }
                    ],
                },
            }
        },
        "test flows",
    )


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
async def pipeline(
    settings: Settings, local_stack: stack.StackConfig, scripted: ScriptedLLM
) -> AsyncIterator[Settings]:
    llm = LLMSettings(base_url=local_stack.llm_base_url, model=local_stack.llm_model_name)
    kafka = settings.kafka.model_copy(update={"group_prefix": f"gj-{uuid.uuid4().hex[:6]}"})
    run_settings = settings.model_copy(update={"llm": llm, "kafka": kafka})
    flows = flows_for(scripted.base_url)
    async with (
        running_service(GENERATOR, run_settings, flows),
        running_service(JUDGE, run_settings, flows),
    ):
        yield run_settings


def record(flow: str, text: str, **extra: Any) -> Record:
    return Record(record_id=f"{flow}-{uuid.uuid4().hex[:10]}", flow=flow, instruction=text, **extra)


async def test_generations_and_judgments_on_the_real_model(pipeline: Settings) -> None:
    plain = record("gen-judge", "Write a Python one-liner that reverses a string.")
    answered = record(
        "gen-judge",
        "What does `len([1, 2, 3])` return in Python?",
        responses=[{"text": "It returns 3.", "model": "prod-app", "source": "app"}],
    )
    await produce(pipeline.kafka, RECORDS_INGESTED, [plain.to_bytes(), answered.to_bytes()])
    ids = {plain.record_id, answered.record_id}

    generated = {
        r.record_id: r
        for r in await read_records(pipeline.kafka, RECORDS_GENERATED, ids, within_s=180)
    }
    assert set(generated) == ids
    for candidate in generated[plain.record_id].responses:
        assert candidate.source == "generator" and candidate.text.strip()
        assert candidate.usage is not None and 0 < candidate.usage.completion_tokens <= 48
        assert candidate.latency_ms and candidate.latency_ms > 0
        assert candidate.finish_reason in ("stop", "length")
        assert candidate.params["max_tokens"] == 48
    assert len(generated[plain.record_id].responses) == 2
    kept = generated[answered.record_id].responses
    assert [r.source for r in kept] == ["app"]
    assert kept[0].text == "It returns 3."

    judged = {
        r.record_id: r
        for r in await read_records(pipeline.kafka, RECORDS_JUDGED, ids, within_s=600)
    }
    for record_id, n in ((plain.record_id, 2), (answered.record_id, 1)):
        [judgment] = judged[record_id].judgments
        assert judgment.rubric == "multi-aspect"
        assert judgment.status == "ok", (judgment.error, judgment.raw_output)
        assert sorted(judgment.order) == list(range(n))
        assert len(judgment.ratings) == n
        for ratings in judgment.ratings:
            aspects = {r.aspect for r in ratings}
            assert {
                "helpfulness",
                "honesty",
                "instruction_following",
                "truthfulness",
                "overall",
            } == aspects
            assert all(1 <= r.score <= 5 for r in ratings)
        assert judgment.margin is not None and 0 <= judgment.margin <= 4


async def test_app_answer_kept_without_extra_candidates(pipeline: Settings) -> None:
    answered = record(
        "keep-app-answer", "Say hi.", responses=[{"text": "hi", "model": "prod", "source": "app"}]
    )
    fresh = record("keep-app-answer", "Say hello.")
    compared = record(
        "compare", "Say hey.", responses=[{"text": "hey", "model": "prod", "source": "app"}]
    )
    await produce(
        pipeline.kafka,
        RECORDS_INGESTED,
        [answered.to_bytes(), fresh.to_bytes(), compared.to_bytes()],
    )
    # No judge in this flow: the generator sends records straight to the publisher's input.
    out = {
        r.record_id: r
        for r in await read_records(
            pipeline.kafka,
            RECORDS_JUDGED,
            {answered.record_id, fresh.record_id, compared.record_id},
            within_s=180,
        )
    }
    assert [r.source for r in out[answered.record_id].responses] == ["app"]
    assert [r.source for r in out[fresh.record_id].responses] == ["generator"]
    assert [r.source for r in out[compared.record_id].responses] == ["app", "generator"]


async def test_an_unfixable_llm_error_dead_letters_the_record_an_outage_is_waited_out(
    pipeline: Settings, scripted: ScriptedLLM
) -> None:
    too_long = record("scripted", "a very long prompt")
    scripted.add(context_too_long())
    await produce(pipeline.kafka, RECORDS_INGESTED, [too_long.to_bytes()])
    [letter] = await read_dead_letters(pipeline.kafka, RECORDS_INGESTED, {too_long.record_id})
    assert "exceeds the available context size" in letter.error
    assert letter.service == "generator"

    # The endpoint down for longer than the client's own retries (max_retries 1): transient,
    # so the service retries until it is back; the record is generated, never dead-lettered.
    flaky = record("scripted", "the endpoint is down")
    scripted.add(
        *[status(503, {"error": {"message": "overloaded"}})] * 6,
        reply("answer after the outage"),
    )
    await produce(pipeline.kafka, RECORDS_INGESTED, [flaky.to_bytes()])
    [out] = await read_records(pipeline.kafka, RECORDS_JUDGED, {flaky.record_id}, within_s=120)
    assert [r.text for r in out.responses] == ["answer after the outage"]

    recovered = record("scripted", "fine after one 429")
    scripted.add(
        status(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
        reply("scripted answer"),
    )
    await produce(pipeline.kafka, RECORDS_INGESTED, [recovered.to_bytes()])
    [out] = await read_records(pipeline.kafka, RECORDS_JUDGED, {recovered.record_id}, within_s=60)
    assert [r.text for r in out.responses] == ["scripted answer"]


def prefer_marked(body: dict[str, Any]) -> str:
    """A judge that always prefers the response containing MARK, wherever it is shown."""
    prompt = body["messages"][-1]["content"]
    shown = re.findall(r'<response id="([A-Z])">\n(.*?)\n</response>', prompt, re.S)
    winner = next(label for label, text in shown if "MARK" in text)
    return json.dumps({"rationale": "it has the mark", "winner": winner})


async def test_position_shuffle_is_undone(pipeline: Settings, scripted: ScriptedLLM) -> None:
    scripted.responder = prefer_marked
    for marked in (0, 1):
        texts = ["plain answer", "plain answer"]
        texts[marked] = "MARK answer"
        judged = record(
            "pairwise-scripted",
            "Which is better?",
            responses=[{"text": t, "model": f"m{i}", "source": "app"} for i, t in enumerate(texts)],
        )
        await produce(pipeline.kafka, RECORDS_GENERATED, [judged.to_bytes()])
        [out] = await read_records(pipeline.kafka, RECORDS_JUDGED, {judged.record_id}, within_s=60)
        assert len(out.judgments) == 2
        assert {tuple(j.order) for j in out.judgments} == {(0, 1), (1, 0)}  # both positions
        for judgment in out.judgments:
            assert judgment.status == "ok" and judgment.preferred == marked
            assert judgment.agreement == 1.0 and judgment.judge_model == "scripted-judge"
