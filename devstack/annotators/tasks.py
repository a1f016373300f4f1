"""Tasks from records: what a bot annotator is given to answer (`devstack.annotators.base.Task`).

`make_task` builds one from a record as the owner lists it from Argilla; `offline_task` from a
Loopline record and a template alone, without Argilla (tests, contract suites, benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devstack.annotators.base import Task
from devstack.annotators.rest import ListedRecord
from shared.argilla_metadata import record_from_metadata
from shared.events import Record
from shared.templates import QuestionSpec, Template


def plain_suggestion(spec: QuestionSpec, value: Any) -> Any:
    """A suggestion's value in the plain form of answers (a ranking: labels best first)."""
    ranking = spec.kind == "ranking" and isinstance(value, list) and bool(value)
    if ranking and all(isinstance(item, Mapping) for item in value):
        ranked = sorted(enumerate(value), key=lambda p: (p[1].get("rank") or p[0] + 1, p[0]))
        return [str(item["value"]) for _, item in ranked]
    return value


def make_task(
    listed: ListedRecord,
    annotator: str,
    template: Template,
    required: frozenset[str],
) -> Task:
    """The task a bot answers for a listed record (the owner's view: extra metadata included)."""
    specs = template.questions()
    try:
        record = record_from_metadata(listed.metadata)
    except (KeyError, ValueError):
        record = None
    try:
        shown = template.shown_responses(record) if record is not None else ()
    except ValueError:
        shown = ()
    by_name = {spec.name: spec for spec in specs}
    suggestions = {
        name: plain_suggestion(by_name[name], value)
        for name, value in listed.suggestions.items()
        if name in by_name
    }
    return Task(
        annotator=annotator,
        record_id=listed.external_id,
        questions=specs,
        required=required,
        suggestions=suggestions,
        fields=dict(listed.fields),
        record=record,
        shown=tuple(shown),
    )


def required_questions(template: Template) -> frozenset[str]:
    """The questions a submission must answer, from the template's settings."""
    return frozenset(q.name for q in template.settings(1).questions if q.required)


def offline_task(template: Template, record: Record, annotator: str = "annotator") -> Task:
    """The task `template` makes of `record`, as a bot would meet it in Argilla."""
    shown = template.to_record(record)
    listed = ListedRecord(
        id=record.record_id,
        external_id=record.record_id,
        status="pending",
        fields=dict(shown.fields),
        metadata=dict(shown.metadata),
        responses=(),
        suggestions={s.question_name: s.value for s in shown.suggestions},
    )
    return make_task(listed, annotator, template, required_questions(template))
