"""Structured output from the judge: JSON found in chatty or code-fenced replies, one repair
round quoting the error, cut-off output, and endpoints that reject `response_format`."""

import pytest
from pydantic import BaseModel

from services.judge.judging import judge_record
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from services.judge.structured import (
    REPAIR_SEPARATOR,
    extract_json_object,
    response_format_for,
    structured_call,
)
from shared.events import ChatMessage, Role
from shared.llm.base import LLMError
from tests.unit.judge.scripted_judge import Call, Reply, ScriptedLLM, record


class Verdict(BaseModel):
    score: int


def test_extract_json_object() -> None:
    assert extract_json_object('Sure! Here it is:\n```json\n{"a": {"b": 1}}\n```\nBye') == (
        '{"a": {"b": 1}}'
    )
    assert extract_json_object('Thinking {not json} then {"a": 1} and {"b": 2}') == '{"a": 1}'
    assert extract_json_object("no object [1, 2]") is None


async def test_code_fenced_json_is_accepted() -> None:
    llm = ScriptedLLM(lambda c: 'My verdict:\n```json\n{"score": 4}\n```')
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value == Verdict(score=4) and not result.repaired and result.error is None
    [call] = llm.calls
    assert call.response_format is not None
    assert call.response_format["type"] == "json_schema"
    assert call.response_format["json_schema"]["schema"] == Verdict.model_json_schema()
    assert call.response_format["json_schema"]["strict"] is True


async def test_invalid_output_is_repaired_once() -> None:
    replies = iter(['{"score": "great"', '{"score": 5}'])
    llm = ScriptedLLM(lambda c: next(replies))
    messages = [ChatMessage(role=Role.user, content="rate")]
    result = await structured_call(llm, messages, Verdict, max_tokens=50)
    assert result.value == Verdict(score=5) and result.repaired
    assert result.raw == '{"score": 5}'
    assert len(llm.calls) == 2
    repair = llm.calls[1].messages
    assert [m.role for m in repair] == [Role.user, Role.assistant, Role.user]
    assert repair[1].content == '{"score": "great"'
    assert "no JSON object" in repair[2].content
    assert '"score"' in repair[2].content  # the schema is quoted
    assert llm.calls[1].response_format == llm.calls[0].response_format


async def test_validation_error_is_quoted_in_the_repair() -> None:
    replies = iter(['{"score": "great"}', '{"score": 3}'])
    llm = ScriptedLLM(lambda c: next(replies))
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.repaired and result.value == Verdict(score=3)
    assert "score: Input should be a valid integer" in llm.calls[1].messages[-1].content


async def test_still_invalid_gives_a_failed_judgment_with_the_raw_text() -> None:
    llm = ScriptedLLM(lambda c: "I think A is better." if c.index == 0 else '{"responses": []}')
    [judgment] = await judge_record(record(["a", "b"]), MultiAspectRubric(), llm)
    assert judgment.status == "failed"
    assert judgment.ratings == [] and judgment.margin is None
    assert judgment.raw_output == f'I think A is better.{REPAIR_SEPARATOR}{{"responses": []}}'
    assert judgment.error is not None and "after one repair" in judgment.error
    assert len(llm.calls) == 2


async def test_cut_off_output_is_reported() -> None:
    llm = ScriptedLLM(lambda c: '{"score": ', finish_reason="length")
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value is None and result.error is not None
    assert "cut off at max_tokens" in result.error


async def test_endpoint_rejecting_response_format_is_asked_without_it() -> None:
    def script(call: Call) -> Reply:
        if call.response_format is not None:
            return LLMError("http://x: HTTP 400: 'response_format' is not supported", 400)
        return '{"score": 2}'

    llm = ScriptedLLM(script)
    result = await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert result.value == Verdict(score=2) and not result.used_response_format
    assert [c.response_format is None for c in llm.calls] == [False, True]
    assert "JSON schema" in llm.calls[1].messages[-1].content  # the schema moved into the prompt


async def test_other_bad_requests_are_not_mistaken_for_a_rejected_format() -> None:
    llm = ScriptedLLM(lambda c: LLMError("HTTP 400: context length exceeded", 400))
    with pytest.raises(LLMError):
        await structured_call(llm, [ChatMessage(role=Role.user, content="rate")], Verdict)
    assert len(llm.calls) == 1


def test_a_rubrics_schema_is_built_once_not_per_call() -> None:
    # Building a model's JSON schema cost ~0.5 ms of CPU on every judge call.
    rubric = MultiAspectRubric()
    first = response_format_for(rubric.output_model(2))["json_schema"]["schema"]
    again = response_format_for(rubric.output_model(2))["json_schema"]["schema"]
    assert again is first
    assert first == rubric.output_model(2).model_json_schema()
