"""The exporter under a flow's `publish.when`: the judged records `shared.review` does not send
to people are auto-accepted, carrying their decision; the others wait for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.sample_records import completed, preference, record, response
from services.exporter.aggregate import Questions
from services.exporter.export import accept, export_versions, store_path
from services.exporter.reading import load_version
from services.exporter.record_pass import aggregate_row
from services.exporter.store import AUTO, HUMAN, ExportStore, StoredRow
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED, Record, ReviewDecision, ReviewReason
from shared.flows import FlowsConfig, ReviewWhen, parse_flows
from shared.review import review
from shared.settings import Settings


def flows_config(publish: dict[str, Any] | None, **export: Any) -> FlowsConfig:
    flow: dict[str, Any] = {"export": {"formats": [{"plugin": "sft"}], "test_size": 0.0, **export}}
    if publish is not None:
        flow["publish"] = publish
    return parse_flows({"flows": {"support": flow}}, "test")


GATED = {"plugin": "preference", "when": {"margin_below": 2}}


def when_of(flows: FlowsConfig) -> ReviewWhen | None:
    publish = flows.flows["support"].publish
    return None if publish is None else publish.when


def judged(name: str, scores: tuple[float, ...] | None) -> Record:
    return record(instruction=f"task {name}", judge_scores=scores, record_id=name)


def kept(flows: FlowsConfig, topic: str, body: bytes, offset: int = 0) -> Any:
    result = accept(flows, topic, 0, offset, body)
    return None if result is None else result[1]


def test_judged_records_the_judge_is_sure_of_are_auto_accepted_with_their_decision() -> None:
    flows = flows_config(GATED)
    original = judged("sure", (5.0, 2.0))
    sure = kept(flows, RECORDS_JUDGED, original.to_bytes())
    assert sure is not None and sure.kind == AUTO
    stored = Record.model_validate_json(sure.body)
    assert stored.review == ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)
    assert stored.model_copy(update={"review": None}).to_bytes() == original.to_bytes()
    # Those people will see are not accepted from records.judged.
    assert kept(flows, RECORDS_JUDGED, judged("close", (3.0, 2.0)).to_bytes()) is None
    assert kept(flows, RECORDS_JUDGED, judged("unjudged", None).to_bytes()) is None


def test_the_audit_sample_waits_for_people_too() -> None:
    flows = flows_config({"plugin": "preference", "when": {"sample_rate": 0.5}})
    records = [judged(f"r{i}", (5.0, 1.0)) for i in range(40)]
    accepted = {r.record_id for r in records if kept(flows, RECORDS_JUDGED, r.to_bytes())}
    audited = {r.record_id for r in records if review(r, when_of(flows)).to_people}
    assert audited and accepted  # both sides have records at this rate
    assert accepted == {r.record_id for r in records} - audited


def test_auto_accept_rules_still_apply_to_records_not_sent_to_people() -> None:
    flows = flows_config(GATED, auto_accept={"min_margin": 3.0})
    assert kept(flows, RECORDS_JUDGED, judged("wide", (5.0, 1.0)).to_bytes()) is not None
    # Not sent to people (margin 2.5 >= 2) but short of the flow's own rule: not accepted.
    assert kept(flows, RECORDS_JUDGED, judged("middle", (4.5, 2.0)).to_bytes()) is None


def test_without_when_nothing_changes() -> None:
    # People see every record: judged ones are never auto-accepted.
    with_people = flows_config({"plugin": "preference"})
    assert kept(with_people, RECORDS_JUDGED, judged("sure", (5.0, 1.0)).to_bytes()) is None
    # No people: every judged record, stored as it came, without a decision.
    body = judged("sure", (5.0, 1.0)).to_bytes()
    alone = kept(flows_config(None), RECORDS_JUDGED, body)
    assert alone is not None and alone.body == body
    assert Record.model_validate_json(alone.body).review is None


def test_records_people_answered_keep_the_decision_they_went_with() -> None:
    flows = flows_config(GATED)
    rec = judged("close", (3.0, 2.0))
    sent = rec.model_copy(update={"review": review(rec, when_of(flows))})
    answer = response(sent, "ann1", preference(5, 2))
    event = kept(flows, RECORDS_COMPLETED, completed(sent, answer).to_bytes())
    assert event is not None and event.kind == HUMAN
    row = StoredRow(event.record_id, event.kind, event.event_time, event.body)
    agg = aggregate_row(row, Questions())
    assert agg.record.review is not None
    assert (agg.record.review.reason, agg.record.review.detail) == (
        ReviewReason.low_margin,
        "margin 1 < 2",
    )


def test_the_export_holds_exactly_the_sure_records_auto_accepted(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path)
    flows = flows_config(GATED)
    scores = {"a": (5.0, 1.0), "b": (3.0, 2.5), "c": (4.0, 2.0), "d": (2.0, 1.5), "e": None}
    events = []
    for offset, (name, judged_scores) in enumerate(scores.items()):
        event = kept(flows, RECORDS_JUDGED, judged(name, judged_scores).to_bytes(), offset)
        if event is not None:
            events.append(event)
    # People answered one of the records they were sent.
    close = judged("b", scores["b"])
    sent = close.model_copy(update={"review": review(close, when_of(flows))})
    answered = completed(sent, response(sent, "ann1", preference(5, 2)))
    events.append(kept(flows, RECORDS_COMPLETED, answered.to_bytes(), 10))
    flow = flows.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        store.add(events, ["sft"])
        [result] = export_versions(settings, "support", flow, flow.export.formats, store)
        reasons = {
            row[0]: aggregate_row(StoredRow._make(row), Questions()).record.review
            for batch in store.batches(100)
            for row in batch
        }
    rows = load_version(result.path)["train"].to_list()
    assert {r["record_id"]: r["auto_accepted"] for r in rows} == {"a": True, "c": True, "b": False}
    assert {rid: d.reason if d else None for rid, d in reasons.items()} == {
        "a": ReviewReason.judge_sure,
        "b": ReviewReason.low_margin,
        "c": ReviewReason.judge_sure,
    }
