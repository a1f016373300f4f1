"""The preference template: a rating per response and a ranking, suggested from the judge's
ratings (repeats averaged, agreement as the score), pairwise verdicts or checklist counts."""

from __future__ import annotations

from typing import Any

import pytest

from services.argilla_publisher.templates.base import prompt_markdown
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from shared.plugins import PluginOptionsError
from shared.templates import TemplateRecordError
from tests.unit.argilla_publisher.template_records import (
    additive,
    make,
    questions,
    rated,
    suggestions,
)


def test_preference_settings() -> None:
    settings = PreferenceTemplate(responses=3).settings(1)
    assert [f.name for f in settings.fields] == ["prompt", "response_1", "response_2", "response_3"]
    assert questions(settings) == {
        "rating_response_1": ("rating", True),
        "rating_response_2": ("rating", True),
        "rating_response_3": ("rating", True),
        "ranking": ("ranking", True),
        "corrected_response": ("text", False),
    }
    assert settings.questions["rating_response_1"].values == [1, 2, 3, 4, 5]
    assert settings.questions["ranking"].values == ["response_1", "response_2", "response_3"]


def test_preference_suggestions_follow_the_responses() -> None:
    record = make(["weak", "strong"], [rated(2, 5)], context="ctx")
    out = PreferenceTemplate().to_record(record)
    assert dict(out.fields) == {
        "prompt": prompt_markdown(record),
        "response_1": "weak",
        "response_2": "strong",
    }
    assert suggestions(out) == {
        "rating_response_1": (2, None, "judge-7b"),
        "rating_response_2": (5, None, "judge-7b"),
        "ranking": (["response_2", "response_1"], None, "judge-7b"),
    }


def test_preference_averages_repeats_and_scores_agreement() -> None:
    repeats = [
        rated(4, 3, repeat=0, agreement=0.5),
        rated(3, 3, repeat=1, agreement=0.5),
        rated(5, 1, judge="other-judge"),  # another judge: not mixed in
    ]
    out = PreferenceTemplate().to_record(make(judgments=repeats))
    assert suggestions(out) == {
        "rating_response_1": (4, 0.5, "judge-7b"),  # mean 3.5, rounded half up
        "rating_response_2": (3, 0.5, "judge-7b"),
        "ranking": (["response_1", "response_2"], [0.5, 0.5], "judge-7b"),
    }


def test_preference_without_overall_uses_the_mean_of_aspects() -> None:
    judgment = {
        "rubric": "multi-aspect",
        "judge_model": "j",
        "ratings": [
            [{"aspect": "a", "score": 1}, {"aspect": "b", "score": 2}],
            [{"aspect": "a", "score": 5}, {"aspect": "b", "score": 4}],
        ],
    }
    values = {
        q: v
        for q, (v, _, _) in suggestions(
            PreferenceTemplate().to_record(make(judgments=[judgment]))
        ).items()
    }
    assert values == {
        "rating_response_1": 2,
        "rating_response_2": 5,
        "ranking": ["response_2", "response_1"],
    }


def test_preference_pairwise_gives_a_ranking_only() -> None:
    pairwise = {"rubric": "pairwise", "judge_model": "pj", "preferred": 1}
    out = PreferenceTemplate().to_record(make(judgments=[pairwise]))
    assert suggestions(out) == {"ranking": (["response_2", "response_1"], None, "pj")}
    tie = {"rubric": "pairwise", "judge_model": "pj", "tie": True}
    assert suggestions(PreferenceTemplate().to_record(make(judgments=[tie]))) == {}
    split = [
        {"rubric": "pairwise", "judge_model": "pj", "preferred": 0, "agreement": 0.5},
        {"rubric": "pairwise", "judge_model": "pj", "preferred": 1, "agreement": 0.5},
    ]
    assert suggestions(PreferenceTemplate().to_record(make(judgments=split))) == {}


def test_preference_checklist_counts_rank_but_do_not_rate() -> None:
    checklist = additive(["correct"], ["correct", "idiomatic"])
    out = PreferenceTemplate().to_record(make(judgments=[checklist]))
    assert suggestions(out) == {"ranking": (["response_2", "response_1"], None, "checker")}
    both = PreferenceTemplate().to_record(make(judgments=[checklist, rated(5, 1)]))
    assert suggestions(both)["rating_response_1"] == (5, None, "judge-7b")
    thumbs = ThumbsTemplate().to_record(make(["x"], [additive(["a", "b", "c", "d"])]))
    assert suggestions(thumbs) == {}  # 4 criteria met is not a 4 on the 1-5 scale


def test_preference_ignores_failed_judgments() -> None:
    failed = {"rubric": "multi-aspect", "judge_model": "j", "status": "failed", "error": "x"}
    assert suggestions(PreferenceTemplate().to_record(make(judgments=[failed]))) == {}


@pytest.mark.parametrize("texts", [["only one"], ["a", "b", "c"]])
def test_preference_refuses_another_number_of_responses(texts: list[str]) -> None:
    with pytest.raises(TemplateRecordError, match=r"set up for 2 responses.*rec-1 has"):
        PreferenceTemplate().to_record(make(texts))


@pytest.mark.parametrize("responses", [1, 51, "2", True])
def test_preference_responses_option_is_checked(responses: Any) -> None:
    with pytest.raises(PluginOptionsError, match="responses"):
        PreferenceTemplate(responses=responses)


def test_preference_three_responses() -> None:
    out = PreferenceTemplate(responses=3).to_record(make(["a", "b", "c"], [rated(3, 5, 1)]))
    assert out.fields["response_3"] == "c"
    assert suggestions(out)["ranking"][0] == ["response_2", "response_1", "response_3"]
