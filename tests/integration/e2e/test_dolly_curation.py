"""`dolly-curation` end to end: a Dolly-style sample split across three annotators with no
overlap (each in a workspace of their own), curated by them, exported as `sft` with the texts
they edited and a report of which fields changed."""

from __future__ import annotations

from collections import Counter

from devstack.annotators.accounts import split_workspace
from devstack.annotators.answers import EDIT_SENTENCE
from shared.events import RECORDS_JUDGED
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    argilla_records,
    by_record,
    completed_records,
    placements,
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
    # The publisher's split rule: round robin by the record's place on records.judged (its
    # partition plus offset), so each partition's consecutive records go to each in turn.
    where = await placements(loop.settings.kafka, RECORDS_JUDGED, run.record_ids)
    for name, share in shares.items():
        for record_id in share:
            partition, offset = where[record_id]
            assert annotators[(partition + offset) % len(annotators)] == name
    per_partition: dict[int, Counter[str]] = {}
    for name, share in shares.items():
        for record_id in share:
            per_partition.setdefault(where[record_id][0], Counter())[name] += 1
    for partition, counted in per_partition.items():
        sizes = [counted[name] for name in annotators]
        assert max(sizes) - min(sizes) <= 1, (partition, counted)
    # So the shares differ by at most one record per partition the records landed on.
    overall = [len(shares[name]) for name in annotators]
    assert max(overall) - min(overall) <= len(per_partition), (overall, per_partition)

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
