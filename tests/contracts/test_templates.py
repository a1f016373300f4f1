"""The template contract (`shared.templates.Template`), over every installed template.

A third-party template is checked too once installed: it is built from `{}` unless
`MINIMAL_OPTIONS` names it, and shown the first sample record it accepts (one to four
responses). Its round trip runs through the exporter: the Argilla record gives the Loopline
record back, simulated annotators answer every question its `QuestionSpec`s declare (the
last shown response is the best), and the aggregated candidates must follow those answers.

The last test is a third party's preference template with other question names: it exports
the same rows as the built-in one, so the exporter knows no question by its name.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import argilla as rg
import pytest

from devstack.sample_records import T0, completed, preference, record, response
from services.argilla_publisher.templates.base import (
    argilla_question,
    prompt_markdown,
    record_metadata,
    text_field,
)
from services.exporter.aggregate import HUMAN_MODEL, Questions, aggregate_completed
from services.exporter.record_pass import RecordPass
from services.exporter.store import HUMAN, RawRow
from shared.argilla_metadata import record_from_metadata
from shared.events import Record
from shared.flows import Flow
from shared.plugins import PluginKind, PluginRegistry
from shared.templates import (
    CuratedPart,
    QuestionKind,
    QuestionRole,
    QuestionSpec,
    Template,
    TemplateRecordError,
)
from tests.contracts.common import installed

KIND = PluginKind.templates
TEMPLATES = installed(KIND)

# The least options a template needs to be built; a template not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}

# Argilla's question types as `QuestionSpec` kinds.
KIND_OF_TYPE: dict[str, QuestionKind] = {
    "label_selection": "label",
    "multi_label_selection": "multi_label",
    "rating": "rating",
    "ranking": "ranking",
    "text": "text",
}
FIVE = (1, 2, 3, 4, 5)
WRITTEN = "A response a person wrote."
COMMENT = "A remark."


def build(name: str) -> Template:
    template = PluginRegistry().build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(template, Template)
    return template


def samples() -> list[Record]:
    """Records with one to four responses, a context and a category."""
    return [
        record(
            responses=tuple((f"Answer {i} of {n}.", f"model-{i}") for i in range(n)),
            context="Python 3.12",
            metadata={"category": "open_qa"},
        )
        for n in (2, 1, 3, 4)
    ]


def showable(template: Template) -> tuple[Record, rg.Record]:
    """The first sample the template shows, with its Argilla record."""
    for sample in samples():
        try:
            return sample, template.to_record(sample)
        except TemplateRecordError:
            continue
    raise AssertionError(f"{template.name} shows none of the sample records")


def answer(spec: QuestionSpec, best: int, originals: dict[str, str]) -> Any:
    """What an annotator who prefers shown response `best` answers to `spec`."""
    if spec.role == QuestionRole.rating:
        return spec.scale[-1] if spec.response == best else spec.scale[0]
    if spec.role == QuestionRole.ranking:
        order = [best, *(p for p in range(len(spec.labels)) if p != best)]
        return [{"value": spec.labels[p], "rank": rank} for rank, p in enumerate(order, 1)]
    if spec.role == QuestionRole.criteria:
        if spec.response == best:
            return [label for label in spec.labels if label != spec.none_label]
        return [spec.none_label] if spec.none_label else []
    if spec.role == QuestionRole.verdict:
        if spec.response == best:
            return spec.good[0]
        return next(label for label in spec.labels if label not in spec.good)
    if spec.role == QuestionRole.written_response:
        return WRITTEN
    if spec.role == QuestionRole.curated:
        return f"{originals.get(spec.field or '', '')} (edited)".strip()
    return {
        "label": lambda: spec.labels[0],
        "multi_label": lambda: [spec.labels[0]],
        "rating": lambda: spec.scale[0],
        "ranking": lambda: list(spec.labels),
        "text": lambda: COMMENT,
    }[spec.kind]()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "text", "role": QuestionRole.rating, "response": 0}, "needs a 'rating'"),
        ({"kind": "rating", "role": QuestionRole.rating, "scale": FIVE}, "needs a response"),
        ({"kind": "rating", "scale": (1,)}, "scale"),
        ({"kind": "rating", "scale": (5, 4, 3)}, "lowest to highest"),
        ({"kind": "ranking", "role": QuestionRole.ranking}, "labels"),
        ({"kind": "label", "labels": ("a", "a")}, "repeat"),
        (
            {
                "kind": "label",
                "role": QuestionRole.verdict,
                "response": 0,
                "labels": ("ok",),
                "good": ("ok",),
            },
            "some, not all",
        ),
        ({"kind": "multi_label", "labels": ("a",), "none_label": "none"}, "none label"),
        ({"kind": "text", "role": QuestionRole.curated}, "curated"),
        ({"kind": "text", "field": "instruction"}, "curated"),
    ],
)
def test_a_spec_that_does_not_hold_together_is_refused(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        QuestionSpec("q", **fields)


@pytest.mark.parametrize("name", TEMPLATES)
def test_names_itself(name: str) -> None:
    factory = PluginRegistry().load(KIND, name)
    assert factory.name == name


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_settings_questions_are_the_specs_one_to_one(name: str) -> None:
    template = build(name)
    specs = template.questions()
    settings = template.settings(2)
    assert settings.distribution.min_submitted == 2
    assert [(q.name, KIND_OF_TYPE[q.type]) for q in settings.questions] == [
        (spec.name, spec.kind) for spec in specs
    ]
    for question, spec in zip(settings.questions, specs, strict=True):
        if spec.kind in ("label", "multi_label"):
            assert list(question.labels) == list(spec.labels)
        elif spec.kind in ("rating", "ranking"):
            assert list(question.values) == list(spec.scale or spec.labels)
    assert any(q.required for q in settings.questions)  # Argilla refuses to publish otherwise


@pytest.mark.parametrize("name", TEMPLATES)
def test_min_submitted_below_one_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        build(name).settings(0)


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_record_is_shown_or_refused_with_a_template_record_error(name: str) -> None:
    template = build(name)
    for sample in samples():
        try:
            shown = template.to_record(sample)
        except TemplateRecordError as exc:
            assert str(exc)
            continue
        assert shown.id == sample.record_id
        indices = template.shown_responses(sample)
        assert len(set(indices)) == len(indices)
        assert all(0 <= i < len(sample.responses) for i in indices)


@pytest.mark.parametrize("name", TEMPLATES)
def test_round_trip_from_record_to_the_exported_candidates(name: str) -> None:
    template = build(name)
    sample, argilla_record = showable(template)
    back = record_from_metadata(dict(argilla_record.metadata))
    assert back == sample

    shown = template.shown_responses(back)
    best = len(shown) - 1
    specs = template.questions()
    originals = template.originals(back)
    # Every question about a response is about one the record shows.
    assert all(spec.response is None or spec.response < len(shown) for spec in specs)
    values = {spec.name: answer(spec, best, originals) for spec in specs}
    event = completed(back, response(back, "ann1", values), response(back, "ann2", values))
    agg = aggregate_completed(event, Questions.of(template))

    assert agg.submitted == 2 and agg.disagreement == ()
    assert set(agg.answers) == set(values)
    models = [c for c in agg.candidates if c.index is not None]
    assert sorted(c.index for c in models) == list(range(len(back.responses)))
    by_index = {c.index: c for c in models}
    roles = {spec.role for spec in specs}
    if roles & {QuestionRole.rating, QuestionRole.ranking, QuestionRole.criteria}:
        assert models[0].index == shown[best]
    for spec in specs:
        if spec.response is None:
            continue
        candidate = by_index[shown[spec.response]]
        is_best = spec.response == best
        if spec.role == QuestionRole.rating:
            assert candidate.score == (spec.scale[-1] if is_best else spec.scale[0])
            assert candidate.acceptable is is_best
        elif spec.role == QuestionRole.verdict:
            assert candidate.acceptable is is_best
        elif spec.role == QuestionRole.criteria:
            met = len([label for label in spec.labels if label != spec.none_label])
            assert candidate.score == (met if is_best else 0)
    curated = {spec.field: values[spec.name] for spec in specs if spec.role == QuestionRole.curated}
    assert set(agg.changed) == {
        part for part, text in curated.items() if text != originals.get(part)
    }
    if CuratedPart.instruction in curated:
        assert agg.instruction == curated[CuratedPart.instruction]
    written = [values[s.name] for s in specs if s.role == QuestionRole.written_response]
    written += [text for part, text in curated.items() if part == CuratedPart.response]
    if written:
        assert (agg.candidates[0].model, agg.candidates[0].text) == (HUMAN_MODEL, written[0])


# --- a third party's template: other question names, the same meaning -------------------------

RENAMED = {
    "rating_response_1": "score_a",
    "rating_response_2": "score_b",
    "ranking": "order",
    "corrected_response": "rewrite",
}
RANKED = {"response_1": "a", "response_2": "b"}


class RenamedPreference(Template):
    """Two responses rated and ranked, as `preference`, under names of its own."""

    name = "renamed-preference"

    def questions(self) -> tuple[QuestionSpec, ...]:
        return (
            QuestionSpec("score_a", "rating", QuestionRole.rating, response=0, scale=FIVE),
            QuestionSpec("score_b", "rating", QuestionRole.rating, response=1, scale=FIVE),
            QuestionSpec("order", "ranking", QuestionRole.ranking, labels=("a", "b")),
            QuestionSpec("rewrite", "text", QuestionRole.written_response),
        )

    def settings(self, min_submitted: int) -> rg.Settings:
        if min_submitted < 1:
            raise ValueError("min_submitted must be at least 1")
        return rg.Settings(
            fields=[text_field(name, name) for name in ("prompt", "a", "b")],
            questions=[argilla_question(spec, spec.name) for spec in self.questions()],
            distribution=rg.TaskDistribution(min_submitted=min_submitted),
            allow_extra_metadata=True,
        )

    def to_record(self, record: Record) -> rg.Record:
        if len(record.responses) != 2:
            raise TemplateRecordError("two responses, please")
        a, b = (r.text for r in record.responses)
        return rg.Record(
            id=record.record_id,
            fields={"prompt": prompt_markdown(record), "a": a, "b": b},
            metadata=record_metadata(record),
        )


def same(values: dict[str, Any]) -> dict[str, Any]:
    return values


def renamed(values: dict[str, Any]) -> dict[str, Any]:
    """Built-in preference answers under the third party's names."""
    out = {RENAMED[name]: value for name, value in values.items()}
    out["order"] = [{**item, "value": RANKED[item["value"]]} for item in out["order"]]
    return out


def registry_with_the_third_party() -> PluginRegistry:
    def lister(group: str) -> list[EntryPoint]:
        found = list(entry_points(group=group))
        if group == KIND.group:
            target = f"{__name__}:{RenamedPreference.__name__}"
            found.append(EntryPoint(RenamedPreference.name, target, group))
        return found

    return PluginRegistry(lister)


def test_a_third_party_template_with_other_names_exports_the_same_rows() -> None:
    assert [q.name for q in RenamedPreference().settings(1).questions] == list(RENAMED.values())
    answers = [
        [preference(5, 2, best=1), preference(4, 1, best=1)],
        [preference(1, 4, best=2, corrected="A better answer.")],
        [preference(3, 3, best=2), preference(2, 5, best=2)],
        [preference(5, 1, best=1)],
    ]
    cases = [
        (
            record(instruction=f"Question {i}?", responses=((f"a{i}", "m-a"), (f"b{i}", "m-b"))),
            given,
        )
        for i, given in enumerate(answers)
    ]
    registry = registry_with_the_third_party()
    formats = [{"plugin": name} for name in installed(PluginKind.formats)]
    tables = {}
    for template, translate in (("preference", same), ("renamed-preference", renamed)):
        flow = Flow.model_validate({"publish": {"plugin": template}, "export": formats})
        rows: list[RawRow] = []
        for rec, given in cases:
            annotators = [response(rec, f"ann{k}", translate(v)) for k, v in enumerate(given)]
            body = completed(rec, *annotators).model_dump_json().encode()
            rows.append((rec.record_id, HUMAN, T0.isoformat(), body))
        chunk = RecordPass(flow, flow.export.formats, registry).run(rows)
        tables[template] = [
            {split: table.to_pylist() for split, table in sorted(by_split.items())}
            for by_split in chunk.tables
        ]
    assert tables["renamed-preference"] == tables["preference"]
    assert all(any(split_rows for split_rows in t.values()) for t in tables["preference"])
