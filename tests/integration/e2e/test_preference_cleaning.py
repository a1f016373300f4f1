"""`preference-cleaning` end to end: an orca-style chosen/rejected sample judged (no
generation), shown in Argilla with the judge's ratings as suggestions; bots that always
disagree with the judge flip pairs, and a flipped pair comes out flipped in `dpo` and is counted
in the report."""

from __future__ import annotations

from services.exporter.aggregate import ranking_value
from shared.verdict import judge_verdict, to_five_point
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    argilla_records,
    by_record,
    completed_records,
    judged_records,
)

FLOW = "preference-cleaning"


async def test_a_pair_the_bots_flipped_comes_out_flipped(loop: Loop) -> None:
    # Every answer reverses the judge's order (its ratings and ranking).
    run = await loop.demo(FLOW, limit=3, policy_options={"disagree_rate": 1.0})
    judged = await judged_records(loop.settings.kafka, run.record_ids)
    async with loop.owner() as owner:
        listed = await argilla_records(owner, loop.settings.argilla.workspace, FLOW)
    shown = {r.external_id: r for r in listed if r.external_id in judged}
    assert set(shown) == set(run.record_ids)

    rows = by_record(loop.rows(run, "dpo"))
    flipped = []
    for record_id, record in judged.items():
        assert [r.source for r in record.responses] == ["dataset", "dataset"]
        assert record.metadata["preference"] == {"chosen": 0, "rejected": 1}
        [judgment] = record.judgments
        assert (judgment.rubric, judgment.status) == ("multi-aspect", "ok"), judgment
        assert sorted(judgment.order) == [0, 1]  # the order the judge saw them in
        verdict = judge_verdict(record)
        assert verdict is not None and verdict.order is not None
        suggestions = shown[record_id].suggestions
        assert [suggestions[f"rating_response_{i + 1}"] for i in range(2)] == [
            to_five_point(score or 0) for score in verdict.scores
        ]
        # The bots prefer the judge's worse response (on a tie: the second); that one is
        # chosen in dpo.
        preferred = verdict.order[-1]
        [row] = rows[record_id]
        assert row["chosen"] == record.responses[preferred].text
        assert row["rejected"] == record.responses[1 - preferred].text
        assert row["score_chosen"] > row["score_rejected"]
        if preferred == record.metadata["preference"]["rejected"]:
            flipped.append(record_id)
    # Where the judge agreed with the dataset (or could not tell), the bots flipped the pair.
    assert flipped, "the judge preferred every dataset's rejected response: nothing to flip"
    # The report counts the imported pairs people kept and flipped.
    report = (run.exports["dpo"] / "report.html").read_text()
    kept = len(run.record_ids) - len(flipped)
    assert f'<td>flipped</td><td class="num">{len(flipped)}</td>' in report
    assert (f'<td>kept</td><td class="num">{kept}</td>' in report) == (kept > 0)

    completed = await completed_records(loop.settings.kafka, run.record_ids)
    for record_id in flipped:
        [answer] = completed[record_id].responses
        assert answer.status == "submitted"
        assert ranking_value(answer.values["ranking"])[0] == "response_2", answer.values
