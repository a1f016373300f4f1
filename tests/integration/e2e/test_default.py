"""`default` end to end: production-style records (with the app's response) get one more
candidate and a multi-aspect judgment; exactly the records `shared.review.review` sends to
people reach Argilla (with the reason), and every other one is auto-accepted into the export.

Judged by the 1.5B model, as under `make up` (the 0.5B rates every response alike). The
sample's second row is an app's refusal, which the judge rates far below an answer: with
`--limit 3`, at least that record is auto-accepted. `test_review_routing` covers the rule with
judgments made for it."""

from __future__ import annotations

from shared.review import review
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    argilla_records,
    by_record,
    completed_records,
    judged_records,
)

FLOW = "default"


async def test_people_see_what_the_judge_is_unsure_about_the_rest_is_auto_accepted(
    loop: Loop,
) -> None:
    publish = loop.flows.get(FLOW).publish
    assert publish is not None and publish.when is not None
    when = publish.when
    run = await loop.demo(FLOW, limit=3)
    judged = await judged_records(loop.settings.kafka, run.record_ids)
    assert set(judged) == set(run.record_ids)
    decisions = {record_id: review(record, when) for record_id, record in judged.items()}
    to_people = {record_id for record_id, d in decisions.items() if d.to_people}
    auto = set(run.record_ids) - to_people
    print(f"default: {len(to_people)} to people, {len(auto)} auto-accepted: {decisions}")
    assert auto, "the judge is sure about at least the app's refusal"
    for record in judged.values():
        # Imported rows carry their response as the dataset's (an app's arrives over HTTP).
        assert [r.source for r in record.responses] == ["dataset", "generator"]

    async with loop.owner() as owner:
        listed = await argilla_records(owner, loop.settings.argilla.workspace, FLOW)
    in_argilla = {r.external_id: r for r in listed if r.external_id in judged}
    assert set(in_argilla) == to_people
    for record_id, listed_record in in_argilla.items():
        assert listed_record.metadata["review_reason"] == decisions[record_id].reason.value
    assert run.progress.auto_accepted == auto
    if to_people:
        completed = await completed_records(loop.settings.kafka, sorted(to_people))
        assert set(completed) == to_people

    # Every record is in `eval`'s scores (one row per response), flagged auto-accepted exactly
    # when people did not see it; the other formats' rows say the same.
    scores = by_record(loop.rows(run, "eval", "scores"))
    assert set(scores) == set(run.record_ids)
    for fmt in ("eval", "sft", "dpo", "kto"):
        config = "scores" if fmt == "eval" else None
        for record_id, rows in by_record(loop.rows(run, fmt, config)).items():
            assert {row["auto_accepted"] for row in rows} == {record_id in auto}, (fmt, rows)
