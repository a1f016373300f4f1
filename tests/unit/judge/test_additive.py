"""The additive rubric: a checklist of criteria met per response, scored by their count, with
custom criteria and a custom scale name."""

import json

import pytest

from services.judge.judging import judge_record
from services.judge.rubrics.additive import AdditiveRubric
from services.judge.rubrics.base import RubricConfigError
from tests.unit.judge.scripted_judge import Call, ScriptedLLM, record


async def test_additive_criteria_met_and_sum() -> None:
    rubric = AdditiveRubric()
    assert [cid for cid, _ in rubric.criteria] == [
        "correct",
        "edge_cases",
        "idiomatic",
        "explained",
    ]

    def judge(call: Call) -> str:
        entries = [
            {
                "response": label,
                "rationale": f"checked {label}",
                "criteria": {cid: cid in text.split() for cid, _ in rubric.criteria},
            }
            for label, text in call.shown()
        ]
        return json.dumps({"responses": entries})

    texts = ["correct idiomatic", "nothing", "correct edge_cases idiomatic explained"]
    judgments = await judge_record(record(texts), rubric, ScriptedLLM(judge), repeats=3)
    for judgment in judgments:
        assert judgment.status == "ok"
        [[first], [second], [third]] = judgment.ratings
        assert first.aspect == "additive"
        assert (first.score, first.criteria_met) == (2.0, ["correct", "idiomatic"])
        assert (second.score, second.criteria_met) == (0.0, [])
        assert third.score == 4.0 and third.criteria_met == [c for c, _ in rubric.criteria]
        assert judgment.margin == 4.0 and judgment.agreement == 1.0
    assert sorted(tuple(j.order) for j in judgments) != [(0, 1, 2)] * 3  # rotations


def test_additive_custom_criteria_and_scale() -> None:
    rubric = AdditiveRubric(
        criteria=["cites: cites a source", "Is polite to the user"], scale_name="quality"
    )
    assert rubric.criteria == [
        ("cites", "cites a source"),
        ("is_polite_to_the_user", "Is polite to the user"),
    ]
    model = rubric.output_model(1)
    output = model.model_validate(
        {
            "responses": [
                {
                    "response": "A",
                    "rationale": "polite, no source",
                    "criteria": {"cites": False, "is_polite_to_the_user": True},
                }
            ]
        }
    )
    [[rating]] = rubric.to_judgment_fields(output, 1)["ratings"]
    assert (rating.aspect, rating.score, rating.criteria_met) == (
        "quality",
        1.0,
        ["is_polite_to_the_user"],
    )
    with pytest.raises(RubricConfigError, match="repeat"):
        AdditiveRubric(criteria=["a: one", "a: two"])
