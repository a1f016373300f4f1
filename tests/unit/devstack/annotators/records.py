"""Loopline records the built-in templates can show, with and without the judge's verdicts."""

from __future__ import annotations

from shared.events import CandidateResponse, Judgment, Rating, Record
from shared.plugins import PluginKind, PluginRegistry
from shared.templates import Template

GOOD_CODE = "```python\ndef add(a, b):\n    return a + b\n```\nAdds the numbers."
BAD_CODE = "```python\ndef add(a, b):\n    return a - b\n```\nSubtracts, oops."
LOOPING_CODE = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"


def template(name: str, **options: object) -> Template:
    built = PluginRegistry().build(PluginKind.templates, name, dict(options))
    assert isinstance(built, Template)
    return built


def rated(first: float, second: float) -> Judgment:
    """A 1-5 judgment preferring the response with the higher score."""
    return Judgment(
        rubric="multi-aspect",
        judge_model="judge-model",
        ratings=[[Rating(aspect="overall", score=first)], [Rating(aspect="overall", score=second)]],
        order=[0, 1] if first >= second else [1, 0],
        margin=abs(first - second),
    )


def checklist(first: list[str], second: list[str]) -> Judgment:
    """An additive judgment: the criteria each response meets."""
    return Judgment(
        rubric="additive",
        judge_model="judge-model",
        ratings=[
            [Rating(aspect="points", score=len(first), criteria_met=first)],
            [Rating(aspect="points", score=len(second), criteria_met=second)],
        ],
    )


def record(
    record_id: str = "rec-1",
    responses: tuple[str, ...] = ("First answer.", "Second answer."),
    judgments: tuple[Judgment, ...] = (),
    **metadata: object,
) -> Record:
    return Record(
        record_id=record_id,
        flow="bots",
        instruction="Write a function add(a, b) returning the sum.",
        context="Python 3.",
        responses=[CandidateResponse(text=text, model=f"m{i}") for i, text in enumerate(responses)],
        judgments=list(judgments),
        metadata={"category": "coding", **metadata},
    )
