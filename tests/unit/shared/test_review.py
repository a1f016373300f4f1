"""`shared.review.review`: which judged records people see under a flow's `publish.when`."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import (
    CandidateResponse,
    Judgment,
    Rating,
    Record,
    ReviewDecision,
    ReviewReason,
)
from shared.flows import ReviewWhen, parse_flows
from shared.review import review


def scored(margin: float | None, *, status: str = "ok", agreement: float | None = None) -> Judgment:
    if status != "ok":
        return Judgment(rubric="multi-aspect", judge_model="j", status="failed", error="bad json")
    worst = 1.0
    best = worst + (margin or 0.0)
    return Judgment(
        rubric="multi-aspect",
        judge_model="j",
        ratings=[[Rating(aspect="overall", score=best)], [Rating(aspect="overall", score=worst)]],
        margin=margin,
        agreement=agreement,
    )


def pairwise(preferred: int | None, *, agreement: float | None = None) -> Judgment:
    return Judgment(
        rubric="pairwise",
        judge_model="j",
        preferred=preferred,
        tie=preferred is None,
        agreement=agreement,
    )


def judged(*judgments: Judgment, record_id: str = "r-1") -> Record:
    return Record(
        record_id=record_id,
        flow="default",
        instruction="Reverse a list in Python.",
        responses=[
            CandidateResponse(text="xs[::-1]", model="a"),
            CandidateResponse(text="xs.reverse()", model="b"),
        ],
        judgments=list(judgments),
    )


def when(**options: Any) -> ReviewWhen:
    return ReviewWhen(**options)


def test_without_when_every_record_goes_to_people() -> None:
    decision = review(judged(scored(4.0)), None)
    assert decision == ReviewDecision(to_people=True, reason=ReviewReason.every_record)
    # Even one the judge is sure about, or one never judged.
    assert review(judged(), None).to_people


def test_failed_judgments_go_to_people() -> None:
    rule = when(margin_below=2)
    one_of_two = review(judged(scored(3.0), scored(None, status="failed")), rule)
    assert (one_of_two.to_people, one_of_two.reason) == (True, ReviewReason.judgment_failed)
    assert one_of_two.detail == "1 of 2 judgment(s) failed"
    never = review(judged(), rule)
    assert (never.reason, never.detail) == (ReviewReason.judgment_failed, "not judged")


def test_failed_judgments_pass_when_the_flow_says_so() -> None:
    # judgment_failed off: the successful judgment decides (sure here).
    decision = review(
        judged(scored(3.0), scored(None, status="failed")),
        when(judgment_failed=False, margin_below=2),
    )
    assert decision == ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)


def test_margin_below_the_bound_goes_to_people() -> None:
    rule = when(margin_below=2)
    low = review(judged(scored(1.5)), rule)
    assert low == ReviewDecision(
        to_people=True, reason=ReviewReason.low_margin, detail="margin 1.5 < 2"
    )
    at_bound = review(judged(scored(2.0)), rule)
    assert at_bound == ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)


def test_the_smallest_margin_of_repeated_judgments_counts() -> None:
    decision = review(judged(scored(3.0), scored(0.5)), when(margin_below=2))
    assert (decision.reason, decision.detail) == (ReviewReason.low_margin, "margin 0.5 < 2")


def test_scores_without_a_margin_go_to_people() -> None:
    decision = review(judged(scored(None)), when(margin_below=2))
    assert (decision.reason, decision.detail) == (ReviewReason.low_margin, "no margin < 2")


def test_pairwise_preference_has_no_margin_and_is_not_held_back_by_it() -> None:
    rule = when(margin_below=2)
    preferred = review(judged(pairwise(0)), rule)
    assert preferred == ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)
    # A tie is the smallest margin there is.
    tie = review(judged(pairwise(None)), rule)
    assert (tie.to_people, tie.reason, tie.detail) == (
        True,
        ReviewReason.low_margin,
        "margin 0 < 2",
    )
    # Repeats disagreeing still reach people, through agreement_below.
    split = review(
        judged(pairwise(0, agreement=0.5), pairwise(1, agreement=0.5)),
        when(margin_below=2, agreement_below=0.75),
    )
    assert (split.reason, split.detail) == (ReviewReason.disagreement, "agreement 0.5 < 0.75")


def test_agreement_below_the_bound_goes_to_people() -> None:
    rule = when(agreement_below=0.8)
    low = review(judged(scored(3.0, agreement=2 / 3), scored(3.0, agreement=2 / 3)), rule)
    assert (low.to_people, low.reason) == (True, ReviewReason.disagreement)
    assert low.detail == "agreement 0.666667 < 0.8"
    full = review(judged(scored(3.0, agreement=1.0)), rule)
    assert full.reason == ReviewReason.judge_sure
    # A single judgment has no agreement: nothing to disagree on.
    assert review(judged(scored(3.0)), rule).reason == ReviewReason.judge_sure


def test_precedence_failed_then_margin_then_agreement_then_sample() -> None:
    everything = when(margin_below=2, agreement_below=0.9, sample_rate=1.0)
    failing = judged(scored(0.5, agreement=0.5), scored(None, status="failed"))
    assert review(failing, everything).reason == ReviewReason.judgment_failed
    low_and_split = judged(scored(0.5, agreement=0.5), scored(3.0, agreement=0.5))
    assert review(low_and_split, everything).reason == ReviewReason.low_margin
    split_only = judged(scored(3.0, agreement=0.5), scored(3.0, agreement=0.5))
    assert review(split_only, everything).reason == ReviewReason.disagreement
    sure = judged(scored(3.0, agreement=1.0))
    assert review(sure, everything).reason == ReviewReason.audit_sample


def test_no_condition_set_but_judgment_failed_passes_every_successful_record() -> None:
    rule = when()
    assert review(judged(scored(0.0)), rule).reason == ReviewReason.judge_sure
    assert review(judged(scored(None, status="failed")), rule).reason == (
        ReviewReason.judgment_failed
    )


def test_audit_sample_is_stable_by_record_id_and_near_its_rate() -> None:
    rule = when(margin_below=1, sample_rate=0.1)
    ids = [f"rec-{i}" for i in range(2000)]
    first = {i for i in ids if review(judged(scored(3.0), record_id=i), rule).to_people}
    # The same records every time, whatever else the record carries (its judgment here).
    again = {i for i in ids if review(judged(scored(5.0), record_id=i), rule).to_people}
    assert first == again
    assert 0.08 * len(ids) <= len(first) <= 0.12 * len(ids), len(first)
    decisions = {review(judged(scored(3.0), record_id=i), rule) for i in sorted(first)[:5]}
    assert decisions == {
        ReviewDecision(
            to_people=True, reason=ReviewReason.audit_sample, detail="audit sample (10%)"
        )
    }
    # A larger rate keeps every record the smaller one sampled.
    more = when(margin_below=1, sample_rate=0.3)
    wider = {i for i in ids if review(judged(scored(3.0), record_id=i), more).to_people}
    assert first < wider


def test_sample_rate_zero_and_one() -> None:
    ids = [f"rec-{i}" for i in range(200)]
    none = [review(judged(scored(3.0), record_id=i), when(sample_rate=0.0)) for i in ids]
    assert all(d.reason == ReviewReason.judge_sure for d in none)
    every = [review(judged(scored(3.0), record_id=i), when(sample_rate=1.0)) for i in ids]
    assert all(d.reason == ReviewReason.audit_sample for d in every)


def test_the_decision_rides_on_the_record_and_old_records_parse() -> None:
    record = judged(scored(1.0))
    decision = review(record, when(margin_below=2))
    carried = record.model_copy(update={"review": decision})
    back = Record.model_validate_json(carried.to_bytes())
    assert back.review == decision
    legacy = record.model_dump(mode="json")
    legacy.pop("review")
    assert Record.model_validate(legacy).review is None


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"margin_below": 0}, "margin_below"),
        ({"agreement_below": 1.5}, "agreement_below"),
        ({"sample_rate": -0.1}, "sample_rate"),
        ({"margin_beneath": 2}, "margin_beneath"),
    ],
)
def test_bad_when_is_refused_naming_the_key(bad: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=rf"flows\.f\.publish\.when\.{key}"):
        parse_flows({"flows": {"f": {"publish": {"plugin": "preference", "when": bad}}}}, "t")
