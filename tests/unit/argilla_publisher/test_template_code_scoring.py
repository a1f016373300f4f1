"""The code-scoring template: a checklist of criteria per response, suggested from the additive
rubric's criteria met (a majority over repeats), with custom criteria checked."""

from __future__ import annotations

from typing import Any

import pytest

from services.argilla_publisher.templates.base import prompt_markdown
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from shared.criteria import parse_criterion
from shared.plugins import PluginOptionsError
from shared.templates import TemplateRecordError
from tests.unit.argilla_publisher.template_records import (
    additive,
    make,
    questions,
    suggestions,
)


def test_code_scoring_settings() -> None:
    settings = CodeScoringTemplate().settings(1)
    assert [f.name for f in settings.fields] == ["prompt", "response_1", "response_2"]
    assert questions(settings) == {
        "criteria_response_1": ("multi_label_selection", True),
        "criteria_response_2": ("multi_label_selection", True),
    }
    labels = settings.questions["criteria_response_1"].labels
    assert labels == ["correct", "edge_cases", "idiomatic", "explained", "none"]
    assert "**edge_cases**" in settings.guidelines


def test_code_scoring_suggests_the_criteria_met() -> None:
    record = make(["code a", "code b"], [additive(["explained", "correct"], [])])
    out = CodeScoringTemplate().to_record(record)
    assert dict(out.fields) == {
        "prompt": prompt_markdown(record),
        "response_1": "code a",
        "response_2": "code b",
    }
    assert suggestions(out) == {
        "criteria_response_1": (["correct", "explained"], None, "checker"),
        "criteria_response_2": (["none"], None, "checker"),
    }


def test_code_scoring_majority_over_repeats_and_unknown_ids() -> None:
    repeats = [
        additive(["correct", "idiomatic"], ["made_up"], repeat=0),
        additive(["correct"], ["made_up"], repeat=1),
        additive(["correct", "idiomatic"], ["made_up"], repeat=2),
    ]
    out = CodeScoringTemplate().to_record(make(judgments=repeats))
    assert suggestions(out) == {
        "criteria_response_1": (["correct", "idiomatic"], [1.0, 2 / 3], "checker")
    }  # response 2's criteria are not this template's: no suggestion rather than a wrong one


def test_code_scoring_custom_criteria() -> None:
    template = CodeScoringTemplate(criteria=["fast: runs in linear time", "Has type hints"])
    assert template.settings(1).questions["criteria_response_2"].labels == [
        "fast",
        "has_type_hints",
        "none",
    ]
    assert parse_criterion("Has type hints") == ("has_type_hints", "Has type hints")


@pytest.mark.parametrize(
    ("criteria", "problem"),
    [
        ([], "non-empty list"),
        ("correct", "non-empty list"),
        (["a: x", "a: y"], "repeat"),
        (["none: nothing"], "reserved"),
        (["ok", ""], "non-empty strings"),
    ],
)
def test_code_scoring_criteria_are_checked(criteria: Any, problem: str) -> None:
    with pytest.raises(PluginOptionsError, match=problem):
        CodeScoringTemplate(criteria=criteria)


def test_code_scoring_needs_two_responses() -> None:
    with pytest.raises(TemplateRecordError, match="exactly 2"):
        CodeScoringTemplate().to_record(make(["one"]))
