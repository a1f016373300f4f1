"""`dolly-curation` end to end: a Dolly-style sample split across three annotators with no
overlap (each in a workspace of their own), curated by them, exported as `sft` with the texts
they edited and a report of which fields changed."""

from __future__ import annotations

from devstack.annotators.accounts import split_workspace
from devstack.annotators.answers import EDIT_SENTENCE
from services.argilla_publisher.targets import split_index
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    argilla_records,
    by_record,
    completed_records,
)

FLOW = "dolly-curation"


async def test_each_annotator_curates_a_disjoint_share_and_edits_reach_sft(loop: Loop) -> None:
    flow = loop.flows.get(FLOW)
    assert flow.publish is not None
    annotators = flow.publish.annotators
    assert len(annotators) == 3
    # Every response edited: the agree policy appends a fixed sentence to it.
    run = await loop.demo(FLOW, limit=6, policy_options={"edit_rate": 1.0})

    # Each record is in exactly one annotator's workspace, and answered by that annotator.
    shares: dict[str, set[str]] = {}
    async with loop.owner() as owner:
        for name in annotators:
            workspace = split_workspace(loop.settings.argilla.workspace, name)
            listed = await argilla_records(owner, workspace, FLOW)
            shares[name] = {r.external_id for r in listed} & set(run.record_ids)
    assert sorted(i for share in shares.values() for i in share) == sorted(run.record_ids)
    completed = await completed_records(loop.settings.kafka, run.record_ids)
    for name, share in shares.items():
        for record_id in share:
            assert [r.annotator for r in completed[record_id].responses] == [name]
    # The publisher's split rule: the annotator is a function of the record id alone (a stable
    # hash), wherever the record was read from, so a re-emitted record goes to the same person.
    # Shares are balanced only on average: with 6 records one annotator may get none.
    for name, share in shares.items():
        for record_id in share:
            assert annotators[split_index(record_id, len(annotators))] == name, record_id

    # The edited responses are the sft completions; the report counts the changed field.
    rows = by_record(loop.rows(run, "sft"))
    assert set(rows) == set(run.record_ids)
    for record_id, [row] in rows.items():
        original = completed[record_id].record.responses[0].text
        assert row["messages"][-1] == {
            "role": "assistant",
            "content": f"{original.rstrip()}\n\n{EDIT_SENTENCE}",
        }
    report = (run.exports["sft"] / "report.html").read_text()
    assert "Curation: changed fields" in report
    assert f'<td>response</td><td class="num">{len(run.record_ids)}</td>' in report
