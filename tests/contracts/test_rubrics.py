"""The rubric contract (`services.judge.rubrics.base.Rubric`), over every installed rubric.

A third-party rubric is checked too once installed: it is built from `{}` unless
`MINIMAL_OPTIONS` names it, and the judge's answer it reads is made by filling its output
model's JSON schema (`example_output`) unless `EXAMPLE_OUTPUTS` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from services.judge.rubrics.base import JudgmentFields, Rubric
from shared.events import CandidateResponse, ChatMessage, Rating, Record, Role
from shared.plugins import PluginKind, PluginRegistry
from tests.contracts.common import SingleRegistry, check_unknown_option_is_refused, installed

KIND = PluginKind.rubrics
RUBRICS = installed(KIND)

# The least options a rubric needs to be built; a rubric not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {
    "custom": {
        "prompt": "Rate each response to {instruction}:\n{responses}",
        # the least schema the custom rubric takes: one integer score per response
        "output_schema": {
            "type": "object",
            "required": ["ratings"],
            "properties": {
                "ratings": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["score"],
                        "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
                    },
                }
            },
        },
    },
}

# A valid answer of the judge for `n` responses, per rubric; others fill their schema.
EXAMPLE_OUTPUTS: dict[str, Callable[[int], dict[str, Any]]] = {}

FIRST, SECOND = "Use a set: len(set(xs)) != len(xs).", "Sort the list, then compare neighbours."
SAMPLE = Record(
    record_id="contract-rubric-1",
    flow="default",
    instruction="Write a Python check for duplicates in a list.",
    context="The list may be empty.",
    responses=[
        CandidateResponse(text=FIRST, model="m1"),
        CandidateResponse(text=SECOND, model="m2"),
    ],
)


def build(name: str, registry: PluginRegistry | None = None) -> Rubric:
    rubric = (registry or PluginRegistry()).build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(rubric, Rubric)
    return rubric


def fill(schema: dict[str, Any], defs: dict[str, Any], position: int = 0) -> Any:
    """The least value valid against a pydantic JSON schema (flat objects, arrays, scalars).

    The k-th item of an array takes the k-th value of an enum inside it, so a ``responses``
    array of labelled items reads A, B, C...
    """
    if "$ref" in schema:
        return fill(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, position)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][position % len(schema["enum"])]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return fill(options[0], defs, position) if options else None
    kind = schema.get("type")
    if kind == "object":
        return {k: fill(v, defs, position) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        size = max(schema.get("minItems", 1), 1)
        return [fill(schema.get("items", {}), defs, k) for k in range(size)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return low if kind == "integer" else float(low)
    if kind == "string":
        return "x" * max(schema.get("minLength", 1), 1)
    if kind == "boolean":
        return position % 2 == 0
    return None


def example_output(name: str, rubric: Rubric, n: int) -> BaseModel:
    """A valid answer of the judge for `n` responses, as the rubric's output model."""
    model = rubric.output_model(n)
    if name in EXAMPLE_OUTPUTS:
        return model.model_validate(EXAMPLE_OUTPUTS[name](n))
    schema = model.model_json_schema(by_alias=True)
    return model.model_validate(fill(schema, schema.get("$defs", {})))


def check_messages(rubric: Rubric, record: Record) -> list[ChatMessage]:
    """`messages` is a conversation with every shown response's text in it."""
    messages = rubric.messages(record, list(record.responses))
    assert messages and all(isinstance(m, ChatMessage) for m in messages)
    conversation = "\n".join(m.content for m in messages)
    for response in record.responses:
        assert response.text in conversation
    return messages


def check_fields(fields: JudgmentFields, n: int) -> None:
    """Judgment fields in shown positions, consistent with `n` responses."""
    ratings = fields.get("ratings") or []
    assert ratings == [] or len(ratings) == n, f"{len(ratings)} rating lists for {n} responses"
    for rated in ratings:
        assert rated and all(isinstance(r, Rating) for r in rated)
    preferred = fields.get("preferred")
    assert preferred is None or (isinstance(preferred, int) and 0 <= preferred < n)
    tie = fields.get("tie", False)
    assert not (tie and preferred is not None), "both a preferred response and a tie"
    assert ratings or preferred is not None or tie, "the fields say nothing about the responses"
    assert isinstance(fields.get("rationale", ""), str)


@pytest.mark.parametrize("name", RUBRICS)
def test_names_itself(name: str) -> None:
    assert isinstance(build(name).name, str) and build(name).name.strip()


@pytest.mark.parametrize("name", RUBRICS)
def test_the_output_model_has_an_object_schema(name: str) -> None:
    model = build(name).output_model(len(SAMPLE.responses))
    assert isinstance(model, type) and issubclass(model, BaseModel)
    schema = model.model_json_schema()
    assert schema.get("type") == "object" and schema.get("properties")


@pytest.mark.parametrize("name", RUBRICS)
def test_the_messages_show_every_response(name: str) -> None:
    check_messages(build(name), SAMPLE)


@pytest.mark.parametrize("name", RUBRICS)
def test_a_valid_answer_reads_as_fields_for_every_response(name: str) -> None:
    rubric = build(name)
    n = len(SAMPLE.responses)
    check_fields(rubric.to_judgment_fields(example_output(name, rubric, n), n), n)


# The checks above can fail: broken rubrics do not pass them.


class OneScoreOnly(Rubric):
    """Scores the first response and forgets the others; shows only the first one."""

    name = "one-score-only"

    def __init__(self, scale: int = 5) -> None:
        self.scale = scale

    def output_model(self, n_responses: int) -> type[BaseModel]:
        class Score(BaseModel):
            score: int

        return Score

    def messages(self, record: Record, shown: list[CandidateResponse]) -> list[ChatMessage]:
        return [ChatMessage(role=Role.user, content=f"Score this: {shown[0].text}")]

    def to_judgment_fields(self, output: BaseModel, n: int) -> JudgmentFields:
        return {"ratings": [[Rating(aspect="score", score=float(output.model_dump()["score"]))]]}


class TakesAnything(OneScoreOnly):
    """Swallows every option, so a typo in a flow would go unnoticed."""

    def __init__(self, **options: Any) -> None:
        super().__init__()


def test_a_rubric_forgetting_responses_fails_the_checks() -> None:
    rubric = build("one-score-only", SingleRegistry(OneScoreOnly))
    with pytest.raises(AssertionError):
        check_messages(rubric, SAMPLE)
    output = example_output("one-score-only", rubric, 2)
    with pytest.raises(AssertionError, match="1 rating lists for 2 responses"):
        check_fields(rubric.to_judgment_fields(output, 2), 2)
    with pytest.raises(AssertionError, match="both a preferred response and a tie"):
        check_fields({"preferred": 0, "tie": True}, 2)


def test_a_rubric_taking_any_option_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="takes any option"):
        check_unknown_option_is_refused(SingleRegistry(TakesAnything), KIND, "anything", {})
