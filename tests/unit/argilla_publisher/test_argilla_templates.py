"""Argilla templates and settings comparison, without a server."""

from __future__ import annotations

import copy
import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

import argilla as rg
import pytest

from services.argilla_publisher.dataset_settings import settings_diff, settings_shape
from services.argilla_publisher.templates import TEMPLATES
from services.argilla_publisher.templates.base import (
    DEFAULT_SOURCE,
    MAX_GUIDELINES_CHARS,
    default_guidelines,
    prompt_markdown,
)
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.curation import CurationTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.sft_demonstration import SFTDemonstrationTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from shared.argilla_metadata import RECORD_METADATA_KEY, record_from_metadata
from shared.criteria import parse_criterion
from shared.events import Record
from shared.plugins import PluginKind, PluginOptionsError, PluginRegistry
from shared.templates import TemplateRecordError
from shared.verdict import judge_verdict, to_five_point

REPO = Path(__file__).resolve().parents[3]


# --- records --------------------------------------------------------------------------------------


def rated(*scores: float, judge: str = "judge-7b", **extra: Any) -> dict[str, Any]:
    """A multi-aspect judgment with these overall scores, per response."""
    return {
        "rubric": "multi-aspect",
        "judge_model": judge,
        "ratings": [
            [
                {"aspect": "helpfulness", "score": max(1.0, s - 1)},
                {"aspect": "overall", "score": s, "rationale": "..."},
            ]
            for s in scores
        ],
        "margin": max(scores) - min(scores),
        **extra,
    }


def make(
    texts: list[str] | None = None, judgments: list[dict[str, Any]] | None = None, **fields: Any
) -> Record:
    texts = ["first answer", "second answer"] if texts is None else texts
    data: dict[str, Any] = {
        "record_id": "rec-1",
        "flow": "support",
        "instruction": "How do I reverse a list in Python?",
        "responses": [
            {"text": text, "model": f"model-{i}", "source": "generator"}
            for i, text in enumerate(texts)
        ],
        "judgments": judgments or [],
    }
    data.update(fields)
    return Record.model_validate(data)


def suggestions(argilla_record: Any) -> dict[str, tuple[Any, Any, Any]]:
    """question -> (value, score, agent)."""
    return {s.question_name: (s.value, s.score, s.agent) for s in argilla_record.suggestions}


def questions(settings: Any) -> dict[str, tuple[str, bool]]:
    return {q.name: (q.type, q.required) for q in settings.questions}


# --- common behaviour -----------------------------------------------------------------------------


def test_entry_points_in_pyproject_name_these_classes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["loopline.templates"]
    assert set(entry_points) == set(TEMPLATES)
    for name, target in entry_points.items():
        module, attribute = target.split(":")
        cls = getattr(import_module(module), attribute)
        assert cls is TEMPLATES[name] and cls.name == name


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_has_common_settings(name: str) -> None:
    template = TEMPLATES[name]()
    settings = template.settings(3)
    assert settings.distribution.min_submitted == 3
    assert settings.allow_extra_metadata is True
    assert settings_shape(settings)["metadata properties"] == {
        "flow": {"type": "terms"},
        "source": {"type": "terms"},
        "models": {"type": "terms"},
        "tags": {"type": "terms"},
        "judge_margin": {"type": "float"},
    }
    assert settings.guidelines.startswith("# ") and len(settings.guidelines) < MAX_GUIDELINES_CHARS
    assert any(q.required for q in settings.questions)  # Argilla refuses to publish otherwise
    custom = TEMPLATES[name](guidelines="Just **do** it.")
    assert custom.settings(1).guidelines == "Just **do** it."


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_unknown_options_are_named(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour', 'size'\]") as caught:
        PluginRegistry().build(PluginKind.templates, name, {"colour": "red", "size": 3})
    assert isinstance(caught.value, PluginOptionsError)
    assert "guidelines" in str(caught.value)  # the accepted options are listed


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_default_guidelines_load_from_the_package(name: str) -> None:
    shipped = default_guidelines(name)
    assert shipped.startswith("# ") and shipped.endswith("\n")
    guidelines = TEMPLATES[name]().guidelines
    assert "{criteria}" not in guidelines
    # The shipped text is the default, whole (code-scoring fills in its criteria).
    head, _, tail = shipped.partition("{criteria}")
    assert guidelines.startswith(head) and guidelines.endswith(tail)


@pytest.mark.parametrize("bad", ["", "   ", 42, "x" * (MAX_GUIDELINES_CHARS + 1)])
def test_bad_guidelines_are_refused(bad: Any) -> None:
    with pytest.raises(PluginOptionsError, match="guidelines"):
        ThumbsTemplate(guidelines=bad)


def test_min_submitted_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PreferenceTemplate().settings(0)


def test_building_settings_needs_no_server_and_sets_no_default_client() -> None:
    before = rg.Argilla._default_client
    for template in TEMPLATES.values():
        template().settings(1)
    assert rg.Argilla._default_client is before


def test_metadata_and_full_record_round_trip() -> None:
    record = make(
        judgments=[
            {"rubric": "x", "judge_model": "j", "status": "failed", "margin": 9.0},
            rated(2, 5),
        ],
        tags=["prod", "eu"],
        metadata={"source": "import", "category": "coding"},
        responses=[
            {"text": "a", "model": "m1"},
            {"text": "b", "model": "m1"},
        ],
    )
    out = PreferenceTemplate().to_record(record)
    assert out.id == "rec-1"
    metadata = dict(out.metadata)
    assert metadata["flow"] == "support"
    assert metadata["source"] == "import"
    assert metadata["models"] == ["m1"]  # each model once
    assert metadata["tags"] == ["prod", "eu"]
    assert metadata["judge_margin"] == 3.0 and isinstance(metadata["judge_margin"], float)
    assert record_from_metadata(metadata) == record
    assert Record.model_validate_json(metadata[RECORD_METADATA_KEY]) == record


def test_metadata_defaults() -> None:
    metadata = dict(PreferenceTemplate().to_record(make()).metadata)
    assert metadata["source"] == DEFAULT_SOURCE
    assert metadata["tags"] == []
    assert "judge_margin" not in metadata  # no judgment: nothing Argilla would have to index
    with pytest.raises(KeyError, match=RECORD_METADATA_KEY):
        record_from_metadata({"flow": "x"})


def test_prompt_rendering() -> None:
    assert prompt_markdown(make(context="Lists are mutable.")) == (
        "How do I reverse a list in Python?\n\n---\n\n**Context**\n\nLists are mutable."
    )
    chat = make(
        instruction=None,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Reverse [1, 2]"},
        ],
    )
    assert prompt_markdown(chat) == (
        "**System**\n\nBe brief.\n\n**User**\n\nHi\n\n**Assistant**\n\nHello!\n\n"
        "**User**\n\nReverse [1, 2]"
    )


def test_five_point_rounding() -> None:
    assert [to_five_point(s) for s in (0, 1.4, 2.5, 3.5, 4.49, 7)] == [1, 1, 3, 4, 4, 5]


def test_agent_is_reduced_to_what_argilla_accepts() -> None:
    record = make(judgments=[rated(4, 2, judge="org/model@v1+q4 (local)")])
    agents = {agent for _, _, agent in suggestions(PreferenceTemplate().to_record(record)).values()}
    assert agents == {"org/model-v1-q4 -local-"}


# --- preference -----------------------------------------------------------------------------------


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


# --- sft-demonstration ----------------------------------------------------------------------------


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


# --- curation -------------------------------------------------------------------------------------


def test_curation_settings() -> None:
    settings = CurationTemplate().settings(1)
    assert [(f.name, f.required) for f in settings.fields] == [
        ("category", False),
        ("instruction", True),
        ("context", False),
        ("response", False),
    ]
    assert questions(settings) == {
        "final_category": ("text", True),
        "final_instruction": ("text", True),
        "final_context": ("text", False),
        "final_response": ("text", True),
    }


def test_curation_prefills_the_originals() -> None:
    record = make(
        ["Use reversed() or slicing.", "other"],
        context="Python 3",
        metadata={"category": "open_qa"},
    )
    out = CurationTemplate().to_record(record)
    assert dict(out.fields) == {
        "category": "open_qa",
        "instruction": "How do I reverse a list in Python?",
        "context": "Python 3",
        "response": "Use reversed() or slicing.",
    }
    assert suggestions(out) == {
        "final_category": ("open_qa", None, "original"),
        "final_instruction": ("How do I reverse a list in Python?", None, "original"),
        "final_context": ("Python 3", None, "original"),
        "final_response": ("Use reversed() or slicing.", None, "original"),
    }


def test_curation_leaves_out_what_is_missing() -> None:
    record = make([], instruction=None, messages=[{"role": "user", "content": "Hi there"}])
    out = CurationTemplate().to_record(record)
    assert dict(out.fields) == {"instruction": "[user]\nHi there"}
    assert set(suggestions(out)) == {"final_instruction"}


# --- code-scoring ---------------------------------------------------------------------------------


def additive(*met: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "rubric": "additive",
        "judge_model": "checker",
        "ratings": [
            [{"aspect": "additive", "score": float(len(m)), "criteria_met": m}] for m in met
        ],
        **extra,
    }


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


# --- thumbs ---------------------------------------------------------------------------------------


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


# --- settings_diff --------------------------------------------------------------------------------


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
