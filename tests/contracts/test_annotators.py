"""The annotator-policy contract (`devstack.annotators.base.AnnotatorPolicy`), over every
installed policy and every installed template.

A policy must answer any template's records with an answer Argilla would take: submitted
answers give every required question a valid value of its spec (`check_answer`), with or
without the judge's suggestions; and the same task always gets the same answer. A third-party
policy is built from `{}` unless `MINIMAL_OPTIONS` names it; a broken fake shows the suite
fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.annotators.base import (
    Action,
    AnnotatorPolicy,
    Answer,
    Task,
    check_answer,
)
from devstack.annotators.tasks import offline_task
from shared.events import CandidateResponse, Judgment, Rating, Record
from shared.plugins import PluginKind, PluginRegistry
from shared.templates import Template
from tests.contracts.common import SingleRegistry, installed

KIND = PluginKind.annotators
POLICIES = installed(KIND)
TEMPLATES = installed(PluginKind.templates)
ANNOTATORS = ("bot-1", "bot-2", "bot-3")

# The least options a policy needs to be built; a policy not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}


def build(name: str, registry: PluginRegistry | None = None) -> AnnotatorPolicy:
    policy = (registry or PluginRegistry()).build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(policy, AnnotatorPolicy)
    return policy


def sample(record_id: str, responses: int, judged: bool) -> Record:
    texts = ["def add(a, b):\n    return a + b", "Use the + operator.", "a - b", "sum((a, b))"]
    ratings = [
        [Rating(aspect="overall", score=5 - i, criteria_met=["correct"] * (i == 0))]
        for i in range(responses)
    ]
    judgments = [
        Judgment(
            rubric="multi-aspect",
            judge_model="judge",
            ratings=ratings,
            order=list(range(responses)),
        )
    ]
    return Record(
        record_id=record_id,
        flow="contract",
        instruction="Add two numbers in Python.",
        context="Keep it short.",
        responses=[
            CandidateResponse(text=t, model=f"m{i}") for i, t in enumerate(texts[:responses])
        ],
        judgments=judgments if judged else [],
        metadata={"category": "coding", "tests": "assert add(1, 2) == 3"},
    )


def tasks(template: Template) -> list[Task]:
    """Tasks the template makes of records it can show, judged and not, for several bots."""
    made = []
    for responses in (2, 1, 0, 3, 4):
        for judged in (True, False):
            record = sample(f"rec-{responses}-{judged}", responses, judged)
            try:
                template.to_record(record)
            except ValueError:
                continue
            made += [offline_task(template, record, bot) for bot in ANNOTATORS]
    assert made, f"template {template.name!r} showed none of the sample records"
    return made


def every_template() -> list[Template]:
    registry = PluginRegistry()
    return [registry.build(PluginKind.templates, name, {}) for name in TEMPLATES]


def check_policy(policy: AnnotatorPolicy) -> None:
    """What every policy owes, over every template's tasks."""
    actions: set[Action] = set()
    for template in every_template():
        for task in tasks(template):
            answer = policy.answer(task)
            assert isinstance(answer, Answer)
            check_answer(answer, task.questions, task.required)
            assert policy.answer(task) == answer, "the same task must get the same answer"
            actions.add(answer.action)
    assert Action.submit in actions, "with its default options a policy must submit answers"


@pytest.mark.parametrize("name", POLICIES)
def test_answers_are_valid_for_every_template_and_deterministic(name: str) -> None:
    check_policy(build(name))


@pytest.mark.parametrize("name", POLICIES)
def test_the_policy_has_a_name_matching_its_entry_point(name: str) -> None:
    assert type(build(name)).name == name


class OutOfScale(AnnotatorPolicy):
    """Rates everything 0 and leaves required texts empty: not what Argilla takes."""

    name = "out-of-scale"

    def answer(self, task: Task) -> Answer:
        values: dict[str, Any] = {s.name: 0 for s in task.questions if s.kind == "rating"}
        return Answer.submitted(values)


class Restless(AnnotatorPolicy):
    """Answers differently every time it is asked."""

    name = "restless"

    def __init__(self) -> None:
        self.calls = 0

    def answer(self, task: Task) -> Answer:
        self.calls += 1
        return Answer.discarded() if self.calls % 2 else Answer.skipped()


@pytest.mark.parametrize("broken", [OutOfScale, Restless])
def test_the_suite_fails_a_broken_policy(broken: type[AnnotatorPolicy]) -> None:
    with pytest.raises((AssertionError, ValueError)):
        check_policy(build("broken", SingleRegistry(broken)))
