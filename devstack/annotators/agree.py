"""The `agree` policy: an annotator who takes the judge's suggestions, now and then disagrees
or discards (a demo and test tool, see `devstack.annotators.base`)."""

from __future__ import annotations

import random
from typing import Any

from devstack.annotators.answers import (
    criteria_for,
    curated_text,
    edited,
    flipped_criteria,
    preferred_order,
    ranking_for,
    rating_for,
    verdict_for,
    written_text,
)
from devstack.annotators.base import (
    AnnotatorPolicy,
    Answer,
    Task,
    check_rate,
    check_seed,
)
from shared.templates import QuestionRole, QuestionSpec


class AgreePolicy(AnnotatorPolicy):
    """Takes the suggestions where there are some, else a plausible value per question.

    Options (rates are probabilities per record, drawn from a generator seeded by ``seed``,
    the annotator and the record):

    * ``discard_rate``: discard the record;
    * ``disagree_rate``: answer as if the responses were in the reverse of the suggested
      order (a flipped preference, other criteria, the other verdict);
    * ``edit_rate``: edit a required written text or a curated response (one sentence
      appended, `answers.EDIT_SENTENCE`);
    * ``correct_rate``: write a correction where it is optional (the best response, edited).

    Without suggestions, the responses are preferred in the judge's order on the Loopline
    record, else as shown; required texts take the suggestion, else the best response, else
    a text made from the prompt.
    """

    name = "agree"

    def __init__(
        self,
        disagree_rate: float = 0.0,
        discard_rate: float = 0.0,
        edit_rate: float = 0.2,
        correct_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.disagree_rate = check_rate(self.name, "disagree_rate", disagree_rate)
        self.discard_rate = check_rate(self.name, "discard_rate", discard_rate)
        self.edit_rate = check_rate(self.name, "edit_rate", edit_rate)
        self.correct_rate = check_rate(self.name, "correct_rate", correct_rate)
        self.seed = check_seed(self.name, seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(disagree_rate={self.disagree_rate}, "
            f"discard_rate={self.discard_rate}, seed={self.seed})"
        )

    def answer(self, task: Task) -> Answer:
        rng = task.rng(self.seed)
        # Draw every roll up front, so that one rate does not shift the others' draws.
        discard, disagree = rng.random() < self.discard_rate, rng.random() < self.disagree_rate
        if discard:
            return Answer.discarded()
        order = preferred_order(task)
        if disagree:
            order.reverse()
        values: dict[str, Any] = {}
        for spec in task.questions:
            value = self._value(spec, task, order, disagree, rng)
            if value is not None:
                values[spec.name] = value
        return Answer.submitted(values)

    def _value(
        self,
        spec: QuestionSpec,
        task: Task,
        order: list[int],
        disagree: bool,
        rng: random.Random,
    ) -> Any:
        suggested = None if disagree else task.suggestions.get(spec.name)
        rank = order.index(spec.response) if spec.response in order else 0
        count = len(order)
        if spec.role == QuestionRole.curated:
            return curated_text(task, spec, rng, self.edit_rate)
        if spec.role == QuestionRole.written_response:
            return self._written(spec, task, order, rng)
        if suggested is not None:
            return suggested
        if spec.kind == "rating":
            return rating_for(spec, rank, count)
        if spec.kind == "ranking":
            return ranking_for(spec, order)
        if spec.role == QuestionRole.criteria:
            given = task.suggestions.get(spec.name)
            if disagree and isinstance(given, list):
                return flipped_criteria(spec, given)
            return criteria_for(spec, rank, count)
        if spec.role == QuestionRole.verdict:
            given = task.suggestions.get(spec.name)
            if disagree and isinstance(given, str):
                return verdict_for(spec, given not in spec.good)
            good = rank == 0 and not (disagree and count == 1)
            return verdict_for(spec, good)
        if spec.kind == "label":
            return spec.labels[0]
        if spec.kind == "multi_label":
            return [spec.labels[0]]
        if spec.name in task.required:
            return f"Checked by {task.annotator}."
        return None

    def _written(
        self, spec: QuestionSpec, task: Task, order: list[int], rng: random.Random
    ) -> str | None:
        edit = rng.random() < self.edit_rate
        if spec.name not in task.required:
            if rng.random() >= self.correct_rate:
                return None
            return edited(written_text(task, order))
        suggested = task.suggestions.get(spec.name)
        text = suggested if isinstance(suggested, str) and suggested.strip() else None
        text = text or written_text(task, order)
        return edited(text) if edit else text
