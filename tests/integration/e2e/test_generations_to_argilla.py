"""`generations-to-argilla` end to end: both local models answer, a multi-aspect judge rates
both responses, the records land in Argilla with the judge's ratings as suggestions, and `dpo`
has one row per record: the response the annotators (agreeing bots) ranked first is chosen."""

from __future__ import annotations

from devstack.config import model_name
from services.exporter.aggregate import ranking_value
from shared.verdict import judge_verdict, to_five_point
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    argilla_records,
    by_record,
    completed_records,
    judged_records,
)
from tests.integration.e2e.traces import SERVICES, record_trace, services_in

FLOW = "generations-to-argilla"


async def test_judged_generations_reach_argilla_with_suggestions_and_dpo(loop: Loop) -> None:
    run = await loop.demo(FLOW, limit=3)
    judged = await judged_records(loop.settings.kafka, run.record_ids)
    async with loop.owner() as owner:
        listed = await argilla_records(owner, loop.settings.argilla.workspace, FLOW)
    shown = {r.external_id: r for r in listed if r.external_id in judged}
    assert set(shown) == set(run.record_ids)

    for record_id, record in judged.items():
        # One response per model, labelled with the name the endpoint served it under.
        assert [r.model for r in record.responses] == [model_name("0.5b"), model_name("1.5b")]
        [judgment] = record.judgments
        assert judgment.status == "ok", judgment  # the judge had tokens enough for its JSON
        verdict = judge_verdict(record)
        assert verdict is not None and verdict.order is not None
        suggestions = shown[record_id].suggestions
        assert [suggestions[f"rating_response_{i + 1}"] for i in range(2)] == [
            to_five_point(score or 0) for score in verdict.scores
        ]
        ranking = ranking_value(suggestions["ranking"])
        assert ranking == tuple(f"response_{i + 1}" for i in verdict.order)

    completed = await completed_records(loop.settings.kafka, run.record_ids)
    rows = by_record(loop.rows(run, "dpo"))
    assert set(rows) == set(run.record_ids)
    for record_id, [row] in rows.items():
        [answer] = completed[record_id].responses
        ratings = [answer.values[f"rating_response_{i + 1}"] for i in range(2)]
        order = ranking_value(answer.values["ranking"])
        # Better rating wins; equal ratings go to the ranking (the judge's suggestions, taken).
        best = min(range(2), key=lambda i: (-ratings[i], order.index(f"response_{i + 1}")))
        texts = [r.text for r in judged[record_id].responses]
        assert (row["chosen"], row["rejected"]) == (texts[best], texts[1 - best])

    # One trace per record, in the trace viewer: from the ingester (the demo sends its sample
    # through the ingester's HTTP API) through every service to the exporter.
    for record_id in run.record_ids:
        trace_ids, spans = await record_trace(
            loop.phoenix_url, record_id, lambda found: services_in(found) == set(SERVICES)
        )
        assert len(trace_ids) == 1, (record_id, trace_ids)
        assert services_in(spans) == set(SERVICES), sorted({s["name"] for s in spans})
        assert any(s["name"].startswith("chat ") for s in spans)  # the LLM calls, GenAI spans
