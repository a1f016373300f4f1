"""Judgments are labelled with the model name the endpoint reports having served, as the
generator labels candidates (an endpoint routes a name to whatever model it runs), and with the
name asked for only when the endpoint reports none."""

import json
from typing import Any

from devstack.scripted_llm import Behaviour, ScriptedLLM, reply, status
from services.judge.judging import judge_record
from services.judge.rubrics.pairwise import PairwiseRubric
from shared.events import CandidateResponse, Record
from shared.llm.client import OpenAICompatibleLLM

VERDICT = json.dumps({"rationale": "A is shorter", "winner": "A"})


def record() -> Record:
    return Record(
        flow="test",
        instruction="Reverse a string.",
        responses=[CandidateResponse(text=t, model="gen") for t in ("s[::-1]", "loop")],
    )


async def judged_by(responder: Any) -> str:
    async with ScriptedLLM(responder=responder) as server:
        llm = OpenAICompatibleLLM(server.base_url, "asked-judge")
        try:
            [judgment] = await judge_record(record(), PairwiseRubric(), llm)
        finally:
            await llm.aclose()
    assert judgment.status == "ok", judgment.error
    return judgment.judge_model


async def test_the_judgment_names_the_served_model() -> None:
    def served(body: dict[str, Any]) -> Behaviour:
        assert body["model"] == "asked-judge"
        return reply(VERDICT, model="served-judge-q4")

    assert await judged_by(served) == "served-judge-q4"


async def test_the_asked_name_when_the_endpoint_reports_none() -> None:
    def anonymous(body: dict[str, Any]) -> Behaviour:
        completion = {"choices": [{"message": {"content": VERDICT}, "finish_reason": "stop"}]}
        return status(200, completion)

    assert await judged_by(anonymous) == "asked-judge"
