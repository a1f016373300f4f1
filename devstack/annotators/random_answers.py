"""The `random` policy: valid answers drawn at random (seeded), for load and noise; a demo and
test tool (see `devstack.annotators.base`)."""

from __future__ import annotations

import random
from typing import Any

from devstack.annotators.answers import curated_text, written_text
from devstack.annotators.base import (
    AnnotatorPolicy,
    Answer,
    Task,
    check_rate,
    check_seed,
)
from shared.templates import QuestionRole, QuestionSpec


class RandomPolicy(AnnotatorPolicy):
    """A random valid value for every question: a rating of the scale, a shuffled ranking, a
    random set of criteria (or "none"), any label. Required texts are the suggestion (else the
    field or a response), edited now and then; optional texts stay empty.

    Options: ``discard_rate`` (probability of discarding a record), ``seed``.
    """

    name = "random"

    def __init__(self, discard_rate: float = 0.0, seed: int = 0) -> None:
        self.discard_rate = check_rate(self.name, "discard_rate", discard_rate)
        self.seed = check_seed(self.name, seed)

    def __repr__(self) -> str:
        return f"RandomPolicy(discard_rate={self.discard_rate}, seed={self.seed})"

    def answer(self, task: Task) -> Answer:
        rng = task.rng(self.seed)
        if rng.random() < self.discard_rate:
            return Answer.discarded()
        values: dict[str, Any] = {}
        for spec in task.questions:
            value = self._value(spec, task, rng)
            if value is not None:
                values[spec.name] = value
        return Answer.submitted(values)

    def _value(self, spec: QuestionSpec, task: Task, rng: random.Random) -> Any:
        if spec.kind == "rating":
            return rng.choice(spec.scale)
        if spec.kind == "label":
            return rng.choice(spec.labels)
        if spec.kind == "ranking":
            return rng.sample(spec.labels, len(spec.labels))
        if spec.kind == "multi_label":
            options = [label for label in spec.labels if label != spec.none_label]
            chosen = [label for label in options if rng.random() < 0.5]
            if chosen:
                return chosen
            return [spec.none_label] if spec.none_label is not None else [rng.choice(options)]
        if spec.role == QuestionRole.curated:
            return curated_text(task, spec, rng, edit_rate=0.5)
        if spec.name not in task.required:
            return None
        suggested = task.suggestions.get(spec.name)
        if isinstance(suggested, str) and suggested.strip():
            return suggested
        order = list(range(task.positions))
        rng.shuffle(order)
        return written_text(task, order)
