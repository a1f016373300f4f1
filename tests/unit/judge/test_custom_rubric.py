"""The custom rubric: a user's prompt template (filled without str.format surprises) and JSON
schema, compiled to an output model; unsupported schemas and bad prompts are refused at
construction."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.judge.judging import judge_record
from services.judge.rubrics.base import RubricConfigError
from services.judge.rubrics.custom import CustomRubric, fill_template
from tests.unit.judge.scripted_judge import Call, ScriptedLLM, build_rubric, record

CUSTOM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ratings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "rationale": {"type": "string", "maxLength": 300},
                    "score": {"type": "integer", "minimum": 1, "maximum": 10},
                    "flags": {"type": "array", "items": {"enum": ["unsafe", "off-topic"]}},
                },
                "required": ["rationale", "score"],
            },
        },
        "rationale": {"type": "string", "maxLength": 400},
        "confident": {"type": "boolean"},
    },
    "required": ["ratings", "rationale"],
}

TEMPLATE = (
    'Rate each answer 1-10, e.g. {"score": 7}, and a set like {{1, 2}}.\n'
    "Question: {instruction}\nContext: {context}\n{responses}"
)


def test_template_is_format_safe() -> None:
    filled = fill_template(
        TEMPLATE,
        {"instruction": "What does {x} mean in {0}?", "context": "{context}", "responses": "R"},
    )
    assert filled == (
        'Rate each answer 1-10, e.g. {"score": 7}, and a set like {1, 2}.\n'
        "Question: What does {x} mean in {0}?\nContext: {context}\nR"
    )


async def test_custom_rubric_end_to_end() -> None:
    rubric = CustomRubric(prompt=TEMPLATE, output_schema=CUSTOM_SCHEMA, aspect="accuracy")
    rec = record(
        ["uses {braces} MARK", "plain }{ text"],
        instruction="Explain {name} and {{this}} in f-strings",
        context="{unknown}",
    )

    def judge(call: Call) -> str:
        user = call.messages[1].content
        assert "Explain {name} and {{this}} in f-strings" in user
        assert "Context: {unknown}" in user
        assert 'e.g. {"score": 7}' in user
        ratings = [
            {"rationale": f"{label}", "score": 9 if "MARK" in text else 3}
            for label, text in call.shown()
        ]
        return json.dumps({"ratings": ratings, "rationale": "overall fine"})

    judgments = await judge_record(rec, rubric, ScriptedLLM(judge), repeats=2)
    for judgment in judgments:
        assert judgment.status == "ok", judgment.error
        assert [[(r.aspect, r.score) for r in rs] for rs in judgment.ratings] == [
            [("accuracy", 9.0)],
            [("accuracy", 3.0)],
        ]
        assert judgment.rationale == "overall fine"
        assert judgment.margin == 6.0


def test_custom_schema_becomes_a_model() -> None:
    rubric = CustomRubric(prompt="{responses}", output_schema=CUSTOM_SCHEMA)
    model = rubric.output_model(2)
    schema = model.model_json_schema()
    assert schema["properties"]["ratings"]["minItems"] == 2
    assert schema["properties"]["ratings"]["maxItems"] == 2
    assert set(schema["required"]) == {"ratings", "rationale"}
    good = {
        "ratings": [
            {"rationale": "a", "score": 1, "flags": ["unsafe"]},
            {"rationale": "b", "score": 10},
        ],
        "rationale": "r",
    }
    output = model.model_validate(good)
    assert output.model_dump(by_alias=True)["confident"] is None
    bad_cases: list[dict[str, Any]] = [
        {**good, "ratings": good["ratings"][:1]},  # one rating for two responses
        {**good, "ratings": [{"rationale": "a", "score": 11}, good["ratings"][1]]},  # > maximum
        {**good, "ratings": [{"rationale": "a", "score": 5, "flags": ["x"]}, good["ratings"][1]]},
        {**good, "ratings": [{"rationale": "a"}, good["ratings"][1]]},  # no score
        {**good, "extra": 1},  # not in the schema
    ]
    for bad in bad_cases:
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_custom_score_is_always_required_and_score_field_renames_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "items": {"type": "object", "properties": {"grade": {"type": "number"}}},
            }
        },
    }
    rubric = CustomRubric(prompt="{responses}", output_schema=schema, score_field="grade")
    model = rubric.output_model(1)
    with pytest.raises(ValidationError):
        model.model_validate({"ratings": [{}]})
    output = model.model_validate({"ratings": [{"grade": 2.5}]})
    [[rating]] = rubric.to_judgment_fields(output, 1)["ratings"]
    assert rating.score == 2.5 and rating.aspect == "custom"


def _with_ratings_items(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"ratings": {"type": "array", "items": items}}}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, "top level"),
        ({"type": "object", "properties": {"score": {"type": "integer"}}}, "ratings"),
        (_with_ratings_items({"type": "object", "properties": {"rationale": {}}}), "score"),
        (
            _with_ratings_items({"type": "object", "properties": {"score": {"type": "string"}}}),
            "integer or number",
        ),
        (
            _with_ratings_items(
                {
                    "type": "object",
                    "properties": {
                        "score": {"type": "number"},
                        "detail": {"type": "object", "properties": {}},
                    },
                }
            ),
            "nested",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                    "when": {"type": "string", "format": "date-time"},
                },
            },
            "format",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                    "pick": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                },
            },
            "not supported",
        ),
        (
            {
                "type": "object",
                "properties": {
                    **_with_ratings_items(
                        {"type": "object", "properties": {"score": {"type": "number"}}}
                    )["properties"],
                },
                "required": ["ratings", "verdict"],
            },
            "undefined",
        ),
    ],
)
def test_unsupported_schemas_are_rejected_at_construction(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(RubricConfigError, match=message) as caught:
        CustomRubric(prompt="{responses}", output_schema=schema)
    assert "output_schema" in str(caught.value)


def test_custom_prompt_errors() -> None:
    schema = CUSTOM_SCHEMA
    with pytest.raises(RubricConfigError, match="must contain"):
        CustomRubric(prompt="no responses here", output_schema=schema)
    with pytest.raises(RubricConfigError, match="question"):
        CustomRubric(prompt="{question} {responses}", output_schema=schema)
    with pytest.raises(RubricConfigError, match="prompt"):
        CustomRubric(output_schema=schema)
    with pytest.raises(RubricConfigError, match="templat"):
        build_rubric("custom", prompt="{responses}", output_schema=schema, templat="x")
