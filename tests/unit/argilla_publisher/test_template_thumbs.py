"""The thumbs template: good or bad on the app's response (else the first), suggested from its
judged score."""

from __future__ import annotations

import pytest

from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from shared.templates import TemplateRecordError
from tests.unit.argilla_publisher.template_records import make, questions, rated, suggestions


def test_thumbs_settings() -> None:
    settings = ThumbsTemplate().settings(1)
    assert [f.name for f in settings.fields] == ["prompt", "response"]
    assert questions(settings) == {"verdict": ("label_selection", True), "comment": ("text", False)}
    assert settings.questions["verdict"].labels == ["good", "bad"]


@pytest.mark.parametrize(("score", "expected"), [(5, "good"), (4, "good"), (3, None), (2, "bad")])
def test_thumbs_verdict_from_the_app_response_score(score: float, expected: str | None) -> None:
    record = make(
        responses=[
            {"text": "generated", "model": "gen", "source": "generator"},
            {"text": "app answer", "model": "app-model", "source": "app"},
        ],
        judgments=[rated(1 if score > 3 else 5, score)],
    )
    out = ThumbsTemplate().to_record(record)
    assert out.fields["response"] == "app answer"  # the app's response, not the first
    want = {} if expected is None else {"verdict": (expected, None, "judge-7b")}
    assert suggestions(out) == want


def test_thumbs_first_response_without_app_and_refuses_none() -> None:
    assert ThumbsTemplate().to_record(make(["x", "y"])).fields["response"] == "x"
    with pytest.raises(TemplateRecordError, match="needs a response"):
        ThumbsTemplate().to_record(make([]))
