"""The pairwise rubric: the preferred response whatever the order shown, ties, position bias
caught by repeats in both orders, and exactly two responses needed."""

import json

import pytest

from services.judge.judging import judge_record
from services.judge.rubrics.pairwise import PairwiseRubric
from tests.unit.judge.scripted_judge import ScriptedLLM, pairwise_marker, record, texts_with_mark


@pytest.mark.parametrize("mark", [0, 1])
async def test_pairwise_prefers_the_marked_response_whatever_the_order(mark: int) -> None:
    for seed in ["a", "b", "c", "d", "e"]:
        llm = ScriptedLLM(pairwise_marker)
        judgments = await judge_record(
            record(texts_with_mark(2, mark)), PairwiseRubric(), llm, repeats=2, seed=seed
        )
        # Two repeats of two responses: both orders are shown, once each.
        assert sorted(tuple(j.order) for j in judgments) == [(0, 1), (1, 0)]
        for judgment in judgments:
            assert judgment.status == "ok"
            assert judgment.preferred == mark and not judgment.tie
            assert judgment.ratings == [] and judgment.margin is None
            assert judgment.rationale == "the marked one is better"
            assert judgment.agreement == 1.0


async def test_pairwise_tie_and_position_bias() -> None:
    tie = ScriptedLLM(lambda c: json.dumps({"rationale": "same", "winner": "tie"}))
    [judgment] = await judge_record(record(["x", "y"]), PairwiseRubric(), tie)
    assert judgment.tie and judgment.preferred is None and judgment.status == "ok"

    # A judge that always picks whatever is shown first disagrees with itself across orders.
    first = ScriptedLLM(lambda c: json.dumps({"rationale": "first", "winner": "A"}))
    judgments = await judge_record(record(["x", "y"]), PairwiseRubric(), first, repeats=2)
    assert {j.preferred for j in judgments} == {0, 1}
    assert all(j.agreement == 0.5 for j in judgments)


async def test_pairwise_needs_two_responses() -> None:
    llm = ScriptedLLM(pairwise_marker)
    judgments = await judge_record(record(["a", "b", "c"]), PairwiseRubric(), llm, repeats=2)
    assert [j.status for j in judgments] == ["failed", "failed"]
    assert "exactly 2" in (judgments[0].error or "")
    assert judgments[0].ratings == [] and llm.calls == []
