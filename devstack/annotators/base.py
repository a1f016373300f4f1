"""The annotator-policy contract (`loopline.annotators`): how a bot annotator answers a record.

Bot annotators are a demo, test and benchmark tool: real Argilla annotator users whose answers
a policy makes up, sent through Argilla's REST API as the UI sends a person's (see
`devstack.annotators.runner`). They stand in for people; their answers are not data.

A policy sees a record as an annotator would, plus the Loopline record behind it (a `Task`):
the template's questions (`shared.templates.QuestionSpec`), the suggestions shown (the judge's
scores, a curation's originals), the fields, and the Loopline record the publisher stored in
the record's metadata (annotators cannot read that metadata: the runner reads it with the
owner's key and answers with the annotator's). It returns an `Answer`: submit with values,
discard, or skip (leave the record pending for someone else).

Values are plain: a rating an integer of the spec's scale, a label a string, a multi-label
answer a list of labels, a ranking the spec's labels best first (every label once), a text a
string. A submitted answer gives every required question a value; `check_answer` says what a
value breaks. Policies are seeded: the same task gives the same answer (`Task.rng`), whatever
the order in which bots meet records.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from shared.events import Record
from shared.plugins import Plugin
from shared.templates import QuestionRole, QuestionSpec


class Action(StrEnum):
    """What an annotator does with a record: what the UI's Submit, Discard and "next" do."""

    submit = "submit"
    discard = "discard"
    skip = "skip"


@dataclass(frozen=True)
class Answer:
    """A policy's answer: an action and, to submit, a value per question it answers."""

    action: Action
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def submitted(cls, values: Mapping[str, Any]) -> Answer:
        return cls(Action.submit, dict(values))

    @classmethod
    def discarded(cls) -> Answer:
        return cls(Action.discard)

    @classmethod
    def skipped(cls) -> Answer:
        return cls(Action.skip)


@dataclass(frozen=True)
class Task:
    """One record to answer, as an annotator sees it, with the Loopline record behind it.

    * ``annotator``, ``record_id``: who answers which record (they seed `rng`);
    * ``questions``: the template's question specs; ``required``: the names a submission must
      answer (from the dataset's settings);
    * ``suggestions``: the suggested value per question name, in the plain form of answers;
    * ``fields``: the record's field values;
    * ``record``: the Loopline record (None when the metadata holds none); ``shown``: "response
      i" of a spec is ``record.responses[shown[i]]`` (`Template.shown_responses`).
    """

    annotator: str
    record_id: str
    questions: tuple[QuestionSpec, ...]
    required: frozenset[str] = frozenset()
    suggestions: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    record: Record | None = None
    shown: tuple[int, ...] = ()

    def rng(self, seed: int) -> random.Random:
        """A random generator for this annotator and record only: answers do not depend on
        which records a bot met before."""
        return random.Random(f"{seed}:{self.annotator}:{self.record_id}")

    @property
    def positions(self) -> int:
        """How many responses the record shows ("response 0" ... "response n-1")."""
        counts = [len(self.shown)]
        for spec in self.questions:
            if spec.response is not None:
                counts.append(spec.response + 1)
            if spec.role == QuestionRole.ranking:
                counts.append(len(spec.labels))
        return max(counts)

    def response_text(self, position: int) -> str | None:
        """The text of shown response `position`, when the Loopline record has it."""
        if self.record is None or position >= len(self.shown):
            return None
        index = self.shown[position]
        return self.record.responses[index].text if index < len(self.record.responses) else None

    def prompt(self) -> str:
        """The record's instruction (or its last user turn), for policies that write text."""
        if self.record is not None:
            if self.record.instruction:
                return self.record.instruction
            if self.record.messages:
                return self.record.messages[-1].content
        return str(self.fields.get("prompt") or self.fields.get("instruction") or "")


class AnnotatorPolicy(Plugin):
    """The contract of an annotator policy (entry-point group ``loopline.annotators``).

    Built from the command line's options as ``cls(**options)`` (see `Plugin`); ``name`` is
    its plugin name. ``answer(task)`` must be deterministic for a task (use ``task.rng``) and
    safe to call from several threads at once. A submitted answer must pass `check_answer`.
    """

    name: ClassVar[str]

    @abstractmethod
    def answer(self, task: Task) -> Answer:
        """Submit (with values), discard, or skip `task`."""


def check_rate(policy: str, option: str, value: Any) -> float:
    """A probability option (0..1), or `ValueError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"annotator policy {policy!r}: {option} must be between 0 and 1")
    return float(value)


def check_seed(policy: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"annotator policy {policy!r}: seed must be an integer")
    return value


def value_problem(spec: QuestionSpec, value: Any) -> str | None:
    """Why `value` is not a valid answer to `spec` (None: it is)."""
    if spec.kind == "rating":
        ok = isinstance(value, int) and not isinstance(value, bool) and value in spec.scale
        return None if ok else f"{value!r} is not a rating of {list(spec.scale)}"
    if spec.kind == "label":
        return None if value in spec.labels else f"{value!r} is not one of {list(spec.labels)}"
    if spec.kind == "multi_label":
        if not isinstance(value, list) or not value or len(set(value)) != len(value):
            return f"{value!r} is not a non-empty list of distinct labels"
        unknown = [label for label in value if label not in spec.labels]
        if unknown:
            return f"{unknown} are not among {list(spec.labels)}"
        if spec.none_label is not None and spec.none_label in value and len(value) > 1:
            return f"{spec.none_label!r} (none of them) comes alone"
        return None
    if spec.kind == "ranking":
        if not isinstance(value, list) or sorted(value) != sorted(spec.labels):
            return f"{value!r} does not rank each of {list(spec.labels)} once"
        return None
    return None if isinstance(value, str) else f"{value!r} is not a text"


def check_answer(
    answer: Answer, questions: Iterable[QuestionSpec], required: frozenset[str]
) -> None:
    """Raise `ValueError` unless `answer` could be sent: a submission answers every required
    question, only known questions, each with a valid value; a discard or skip has no values."""
    specs = {spec.name: spec for spec in questions}
    if answer.action != Action.submit:
        if answer.values:
            raise ValueError(f"a {answer.action.value} answer carries no values")
        return
    unknown = sorted(set(answer.values) - set(specs))
    if unknown:
        raise ValueError(f"answers to unknown questions {unknown}")
    missing = sorted(required - set(answer.values))
    if missing:
        raise ValueError(f"required questions without an answer: {missing}")
    if not answer.values:
        raise ValueError("a submission answers at least one question")
    for name, value in answer.values.items():
        problem = value_problem(specs[name], value)
        if problem:
            raise ValueError(f"question {name!r}: {problem}")
