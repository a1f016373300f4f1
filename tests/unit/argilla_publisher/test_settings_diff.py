"""Comparing a dataset's settings on the server with a template's: what the server adds is
ignored, every real difference is spelled out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.argilla_publisher.dataset_settings import settings_diff, settings_shape
from services.argilla_publisher.templates import TEMPLATES
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.sft_demonstration import SFTDemonstrationTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate


class Serialised:
    """Settings as read back from a server: only `serialize()` matters to settings_diff."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def serialize(self) -> dict[str, Any]:
        return self.data


def server_like(settings: Any) -> Serialised:
    """`settings` with what the server adds: ids, timestamps, option descriptions, titles."""
    data = copy.deepcopy(settings.serialize())
    for kind in ("fields", "questions", "metadata"):
        for i, item in enumerate(data[kind]):
            item.update(
                id=f"00000000-0000-0000-0000-00000000000{i}",
                inserted_at="2025-01-01T00:00:00",
                updated_at="2025-01-01T00:00:00",
                dataset_id="11111111-1111-1111-1111-111111111111",
                title=item.get("title") or item["name"],
            )
            for option in item.get("settings", {}).get("options") or []:
                option.setdefault("description", None)
    data["guidelines"] = data["guidelines"].replace("\n", "\r\n") + "\n"
    data["mapping"] = None
    return Serialised(data)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_settings_diff_ignores_server_additions(name: str) -> None:
    wanted = TEMPLATES[name]().settings(2)
    assert settings_diff(wanted, wanted) == []
    assert settings_diff(server_like(wanted), wanted) == []


def test_settings_diff_spells_out_differences() -> None:
    existing = server_like(PreferenceTemplate().settings(1))
    data = existing.serialize()
    questions_ = {q["name"]: q for q in data["questions"]}
    questions_["corrected_response"]["required"] = True
    questions_["rating_response_1"]["settings"]["options"] = [{"value": v} for v in (1, 2, 3)]
    fields = {f["name"]: f for f in data["fields"]}
    fields["prompt"]["settings"]["type"] = "chat"
    data["metadata"] = [m for m in data["metadata"] if m["name"] != "judge_margin"]
    data["metadata"][0]["settings"]["type"] = "integer"  # flow
    data["guidelines"] = "Old guidelines"
    data["allow_extra_metadata"] = False
    wanted = PreferenceTemplate(responses=3).settings(2)
    assert settings_diff(existing, wanted) == [
        "field 'prompt': type is 'chat' in the dataset, 'text' in the template",
        "field 'response_3' (text) is missing from the dataset",
        "question 'rating_response_1': labels/values is [1, 2, 3] in the dataset, "
        "[1, 2, 3, 4, 5] in the template",
        "question 'rating_response_3' (rating) is missing from the dataset",
        "question 'ranking': labels/values is ['response_1', 'response_2'] in the dataset, "
        "['response_1', 'response_2', 'response_3'] in the template",
        "question 'corrected_response': required is True in the dataset, False in the template",
        "metadata property 'flow': type is 'integer' in the dataset, 'terms' in the template",
        "metadata property 'judge_margin' (float) is missing from the dataset",
        "distribution: min_submitted is 1 in the dataset, 2 in the template",
        "allow_extra_metadata is False in the dataset, True in the template",
        "guidelines: the dataset's differ from the template's",
    ]


def test_settings_diff_reports_extra_parts_and_other_templates() -> None:
    existing = ThumbsTemplate().settings(1)
    assert settings_diff(existing, ThumbsTemplate(guidelines="New").settings(1)) == [
        "guidelines: the dataset's differ from the template's"
    ]
    differences = settings_diff(existing, SFTDemonstrationTemplate().settings(1))
    assert "field 'response' is in the dataset but not in the template" in differences
    assert "question 'verdict' is in the dataset but not in the template" in differences
    assert "question 'ideal_response' (text) is missing from the dataset" in differences


def test_settings_diff_ignores_label_order_and_texts() -> None:
    existing = CodeScoringTemplate(criteria=["a: one", "b: two"]).settings(1)
    wanted = CodeScoringTemplate(criteria=["b: deux", "a: un"], guidelines="g").settings(1)
    assert settings_diff(existing, wanted) == [
        "guidelines: the dataset's differ from the template's"
    ]
    assert settings_shape(wanted)["questions"]["criteria_response_1"]["options"] == [
        "a",
        "b",
        "none",
    ]
