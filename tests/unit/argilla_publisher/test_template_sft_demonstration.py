"""The sft-demonstration template: people write the ideal response, prefilled with the best
judged one: the app's own among equals, or when nothing was judged."""

from __future__ import annotations

from services.argilla_publisher.templates.sft_demonstration import SFTDemonstrationTemplate
from shared.verdict import judge_verdict
from tests.unit.argilla_publisher.template_records import make, questions, rated, suggestions


def test_sft_settings_and_best_judged_suggestion() -> None:
    template = SFTDemonstrationTemplate()
    settings = template.settings(1)
    assert [f.name for f in settings.fields] == ["prompt"]
    assert questions(settings) == {"ideal_response": ("text", True)}
    out = template.to_record(make(["meh", "great"], [rated(3, 5)]))
    assert dict(out.fields) == {"prompt": "How do I reverse a list in Python?"}
    assert suggestions(out) == {"ideal_response": ("great", None, "judge-7b")}


def test_sft_falls_back_to_the_app_response() -> None:
    record = make(
        responses=[
            {"text": "generated", "model": "gen", "source": "generator"},
            {"text": "from the app", "model": "app-model", "source": "app"},
        ]
    )
    assert suggestions(SFTDemonstrationTemplate().to_record(record)) == {
        "ideal_response": ("from the app", None, "app-model")
    }
    assert suggestions(SFTDemonstrationTemplate().to_record(make([]))) == {}


def test_sft_prefers_the_app_response_among_equally_judged() -> None:
    record = make(
        responses=[
            {"text": "generated", "model": "gen", "source": "generator"},
            {"text": "from the app", "model": "app-model", "source": "app"},
        ],
        judgments=[rated(4, 4)],
    )
    assert judge_verdict(record) is not None
    assert suggestions(SFTDemonstrationTemplate().to_record(record))["ideal_response"][0] == (
        "from the app"
    )
