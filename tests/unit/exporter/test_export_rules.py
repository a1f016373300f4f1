"""The documented rules that turn answers and verdicts into training rows.

* criteria (people's `code-scoring` answers, the `additive` judge's points): a response that
  meets every criterion is good, one that meets a quarter of them or fewer is bad (`kto`);
* a pairwise judge: its winner is chosen, the other rejected (`dpo`, `reward`, `sft`); a tie
  gives no pair;
* a flow with neither a judge nor people: its records are exported as they are, responses in
  their order (`sft` takes the first; there is no preference, so no `dpo`, `reward`, `kto`);
* people's ranking breaks a tie of their ratings.
"""

from typing import Any

from devstack.sample_records import completed, preference, record, response
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.exporter.aggregate import Aggregate, Questions, aggregate_completed
from services.exporter.export import accept
from services.exporter.formats.base import Row
from services.exporter.record_pass import RecordPass
from services.exporter.store import StoredRow
from shared.events import RECORDS_JUDGED, Judgment, Rating, Record
from shared.flows import FlowsConfig, PluginRef
from shared.plugins import PluginKind, PluginRegistry

CODE = Questions.of(CodeScoringTemplate())
FORMATS = ("sft", "dpo", "reward", "kto")
CRITERIA = ["correct: right", "edge_cases: careful", "idiomatic: clean", "explained: told"]


def rows(agg: Aggregate, name: str) -> list[Row]:
    fmt = PluginRegistry().build(PluginKind.formats, name, {})
    return [row for _, row in fmt.rows(agg, "train")]


def criteria_answer(first: list[str], second: list[str]) -> dict[str, Any]:
    return {"criteria_response_1": first or ["none"], "criteria_response_2": second or ["none"]}


def test_all_criteria_met_is_good_and_a_quarter_or_fewer_is_bad() -> None:
    every = ["correct", "edge_cases", "idiomatic", "explained"]
    cases = [(every, ["correct"], [True, False]), (["correct", "idiomatic"], [], [False])]
    for first, second, labels in cases:
        rec = record()
        agg = aggregate_completed(
            completed(rec, response(rec, "ann1", criteria_answer(first, second))), CODE
        )
        assert [row["label"] for row in rows(agg, "kto")] == labels, (first, second)
    rec = record()
    agg = aggregate_completed(
        completed(rec, response(rec, "ann1", criteria_answer(every, ["correct"]))), CODE
    )
    [dpo] = rows(agg, "dpo")
    assert (dpo["chosen"], dpo["score_chosen"], dpo["score_rejected"]) == ("s[::-1]", 4.0, 1.0)


def judged(*judgments: Judgment, flow: str = "auto") -> Record:
    return record(flow=flow).model_copy(update={"judgments": list(judgments)})


def checklist(*met: list[str]) -> Judgment:
    ratings = [[Rating(aspect="additive", score=len(m), criteria_met=m)] for m in met]
    best, worst = max(len(m) for m in met), min(len(m) for m in met)
    return Judgment(rubric="additive", judge_model="j", ratings=ratings, margin=best - worst)


def pairwise(preferred: int | None) -> Judgment:
    return Judgment(
        rubric="pairwise",
        judge_model="j",
        preferred=preferred,
        tie=preferred is None,
        margin=None if preferred is not None else 0.0,
    )


def flows(**flow: Any) -> FlowsConfig:
    formats = [{"plugin": name} for name in FORMATS]
    return FlowsConfig.model_validate({"flows": {"auto": {**flow, "export": formats}}})


def exported(config: FlowsConfig, rec: Record) -> dict[str, list[Row]]:
    """Each format's rows of one judged record, through `accept` and an export pass."""
    kept = accept(config, RECORDS_JUDGED, 0, 0, rec.to_bytes())
    if kept is None:
        return {}
    event = kept[1]
    flow = config.flows["auto"]
    stored = StoredRow(event.record_id, event.kind, event.event_time, event.body)
    raw = (stored.record_id, stored.kind, stored.event_time, stored.body)
    chunk = RecordPass(flow, [PluginRef(plugin=name) for name in FORMATS]).run([raw])
    return {
        name: table.to_pylist()
        for name, t in zip(FORMATS, chunk.tables, strict=True)
        for table in t.values()
    }


def test_the_additive_judge_labels_responses_by_the_criteria_it_names() -> None:
    rec = judged(checklist(["correct", "edge_cases", "idiomatic", "explained"], []))
    with_options = flows(judge={"plugin": "additive", "options": {"criteria": CRITERIA}})
    assert [r["label"] for r in exported(with_options, rec)["kto"]] == [True, False]
    # Three of four: neither good nor bad.
    rec = judged(checklist(["correct", "edge_cases", "idiomatic"], ["correct"]))
    assert [r["label"] for r in exported(with_options, rec)["kto"]] == [False]
    # The rubric's own criteria when the flow names none (four by default).
    rec = judged(checklist(["correct", "edge_cases", "idiomatic", "explained"], ["correct"]))
    defaults = flows(judge={"plugin": "additive"})
    assert [r["label"] for r in exported(defaults, rec)["kto"]] == [True, False]


def test_a_pairwise_winner_is_chosen_and_a_tie_gives_no_pair() -> None:
    config = flows(judge={"plugin": "pairwise"})
    out = exported(config, judged(pairwise(1)))
    [dpo] = out["dpo"]
    assert (dpo["chosen"], dpo["rejected"]) == ("no idea", "s[::-1]")
    assert (dpo["score_chosen"], dpo["score_rejected"]) == (None, None)
    [reward] = out["reward"]
    assert (reward["chosen"], reward["rejected"], reward["margin"]) == ("no idea", "s[::-1]", None)
    [sft] = out["sft"]
    assert sft["messages"][-1]["content"] == "no idea"
    assert "kto" not in out  # a winner is not "good": no labels

    tie = exported(config, judged(pairwise(None)))
    assert "dpo" not in tie and "reward" not in tie
    assert [r["messages"][-1]["content"] for r in tie["sft"]] == ["s[::-1]"]


def test_without_judge_or_people_records_are_exported_as_they_are() -> None:
    out = exported(flows(), record(flow="auto"))
    [sft] = out["sft"]
    assert sft["auto_accepted"] and sft["messages"][-1]["content"] == "s[::-1]"
    assert set(out) == {"sft"}  # no preference: no pair, no label
    # With a judge, an unjudged record is not accepted.
    assert exported(flows(judge={"plugin": "multi-aspect"}), record(flow="auto")) == {}


def test_a_ranking_breaks_a_tie_of_ratings() -> None:
    rec = record()
    answer = preference(3, 3, best=2)
    agg = aggregate_completed(
        completed(rec, response(rec, "ann1", answer)), Questions.of(PreferenceTemplate())
    )
    [dpo] = rows(agg, "dpo")
    assert (dpo["chosen"], dpo["rejected"]) == ("no idea", "s[::-1]")
