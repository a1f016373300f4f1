"""The multi-aspect rubric: 1-5 ratings per aspect that follow each response through the
shuffle, its prompt and output schema, shared or per-aspect rationales, and how records with
a conversation, one response or none are judged."""

import pytest
from pydantic import ValidationError

from services.judge.judging import judge_record
from services.judge.rubrics.base import RubricConfigError
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from shared.events import CandidateResponse, ChatMessage, Record, Role
from tests.unit.judge.scripted_judge import (
    ASPECTS,
    RESPONSE_TAG,
    ScriptedLLM,
    multi_aspect_marker,
    record,
    texts_with_mark,
)


@pytest.mark.parametrize("n", [2, 3, 4])
async def test_multi_aspect_ratings_follow_the_responses_through_the_shuffle(n: int) -> None:
    orders: set[tuple[int, ...]] = set()
    for mark in range(n):
        for seed in ["s1", "s2", "s3", None]:
            llm = ScriptedLLM(multi_aspect_marker)
            judgments = await judge_record(
                record(texts_with_mark(n, mark)), MultiAspectRubric(), llm, repeats=2, seed=seed
            )
            assert len(judgments) == 2
            for r, judgment in enumerate(judgments):
                assert judgment.status == "ok", judgment.error
                assert judgment.repeat == r
                assert sorted(judgment.order) == list(range(n))
                orders.add(tuple(judgment.order))
                assert len(judgment.ratings) == n
                for i, ratings in enumerate(judgment.ratings):
                    assert [x.aspect for x in ratings] == ASPECTS
                    assert {x.score for x in ratings} == ({5.0} if i == mark else {1.0})
                assert judgment.margin == 4.0
                assert judgment.agreement == 1.0
                assert judgment.rubric == "multi-aspect"
                assert judgment.judge_model == "scripted-judge"
                assert judgment.raw_output is not None and "responses" in judgment.raw_output
    assert len(orders) > 1  # the responses really were shown in different orders


async def test_multi_aspect_prompt_and_schema() -> None:
    rubric = MultiAspectRubric(aspects=["helpfulness", "overall"])
    rec = record(["one", "two"], context="Use Python 3.")
    messages = rubric.messages(rec, list(reversed(rec.responses)))
    assert [m.role for m in messages] == [Role.system, Role.user]
    assert "helpfulness" in messages[0].content and "overall" in messages[0].content
    assert '"rationale": "...", "helpfulness": 1-5, "overall": 1-5' in messages[0].content
    user = messages[1].content
    assert "reverses a string" in user and "Use Python 3." in user
    assert RESPONSE_TAG.findall(user) == [("A", "two"), ("B", "one")]

    model = rubric.output_model(2)
    schema = model.model_json_schema()
    assert schema["properties"]["responses"]["minItems"] == 2
    assert schema["properties"]["responses"]["maxItems"] == 2
    good = {"rationale": "ok", "helpfulness": 3, "overall": 4}
    with pytest.raises(ValidationError):  # rationale too long
        model.model_validate({"responses": [{**good, "response": "A", "rationale": "x" * 401}]})
    with pytest.raises(ValidationError):  # score out of range
        model.model_validate({"responses": [{**good, "response": "A", "overall": 6}]})
    with pytest.raises(ValidationError, match="labelled"):  # entries out of order
        model.model_validate({"responses": [{**good, "response": "B"}, {**good, "response": "A"}]})


async def test_multi_aspect_per_aspect_rationales() -> None:
    rubric = MultiAspectRubric(aspects=["helpfulness", "overall"], rationale="per-aspect")
    rec = record(["one", "two"])
    system = rubric.messages(rec, list(rec.responses))[0].content
    assert '"helpfulness": {"rationale": "...", "score": 1-5}' in system
    model = rubric.output_model(2)
    entry = {"rationale": "x" * 201, "score": 3}
    with pytest.raises(ValidationError):  # rationale too long
        model.model_validate({"responses": [{"response": "A", "helpfulness": entry}]})

    llm = ScriptedLLM(lambda c: multi_aspect_marker(c, ["helpfulness", "overall"], True))
    [judgment] = await judge_record(record(["a", "b MARK"]), rubric, llm)
    assert judgment.status == "ok", judgment.error
    assert [[(r.aspect, r.score) for r in rs] for rs in judgment.ratings] == [
        [("helpfulness", 1.0), ("overall", 1.0)],
        [("helpfulness", 5.0), ("overall", 5.0)],
    ]
    shown = {rs[0].rationale for rs in judgment.ratings}
    assert shown == {"helpfulness of A", "helpfulness of B"}


async def test_multi_aspect_shared_rationale_on_every_rating() -> None:
    llm = ScriptedLLM(multi_aspect_marker)
    [judgment] = await judge_record(record(["a MARK", "b"]), MultiAspectRubric(), llm)
    for ratings in judgment.ratings:
        assert len({r.rationale for r in ratings}) == 1
        assert ratings[0].rationale.startswith("all about ")
    with pytest.raises(RubricConfigError, match="rationale must be one of"):
        MultiAspectRubric(rationale="none")


async def test_conversation_records_are_rendered() -> None:
    rec = Record(
        flow="test",
        messages=[
            ChatMessage(role=Role.system, content="be terse"),
            ChatMessage(role=Role.user, content="what is 2+2?"),
        ],
        responses=[CandidateResponse(text="4", model="m")],
    )
    user = MultiAspectRubric().messages(rec, list(rec.responses))[1].content
    assert "[system]\nbe terse" in user and "[user]\nwhat is 2+2?" in user


async def test_one_response_has_margin_zero_and_mean_without_overall() -> None:
    llm = ScriptedLLM(lambda c: multi_aspect_marker(c, ["helpfulness", "honesty"]))
    rubric = MultiAspectRubric(aspects=["helpfulness", "honesty"])
    [judgment] = await judge_record(record(["only MARK"]), rubric, llm)
    assert judgment.status == "ok" and judgment.order == [0]
    assert judgment.margin == 0.0
    assert judgment.agreement is None  # one repeat

    [judgment] = await judge_record(record(["a MARK", "b"]), rubric, ScriptedLLM(llm.script))
    assert judgment.margin == 4.0  # the mean of the aspects stands in for "overall"


async def test_no_responses_nothing_to_judge() -> None:
    llm = ScriptedLLM(multi_aspect_marker)
    assert await judge_record(record([]), MultiAspectRubric(), llm) == []
    assert llm.calls == []
