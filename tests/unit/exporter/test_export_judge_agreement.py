"""The report's review reasons and the judge's agreement with people, per question and per band
of the judge's margin (services/exporter/judge_agreement.py defines agreement)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devstack.sample_records import completed, preference, record, response
from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from services.exporter.aggregate import (
    Aggregate,
    Questions,
    aggregate_completed,
    aggregate_judged,
)
from services.exporter.judge_agreement import band
from services.exporter.report import MARGIN_BANDS, write_report
from services.exporter.stats import CurationStats
from shared.events import Judgment, Rating, Record, ReviewDecision, ReviewReason

PREF = Questions.of(PreferenceTemplate())
CODE = Questions.of(CodeScoringTemplate())
THUMBS = Questions.of(ThumbsTemplate())


def answered(
    questions: Questions, rec: Record, *values: dict[str, Any], reason: ReviewReason | None = None
) -> Aggregate:
    if reason is not None:
        rec = rec.model_copy(update={"review": ReviewDecision(to_people=True, reason=reason)})
    given = [response(rec, f"ann{k}", v) for k, v in enumerate(values)]
    return aggregate_completed(completed(rec, *given), questions)


def cells(stats: CurationStats) -> dict[str, dict[str, tuple[int, int]]]:
    """question → band → (agreed, compared), bands with comparisons only."""
    return {
        row.question: {b: c for b, c in zip(MARGIN_BANDS, row.by_band, strict=True) if c[1]}
        for row in stats.report("t", {}).judge_agreement
    }


def test_margin_bands_include_their_lower_bound() -> None:
    assert [band(m) for m in (0.0, 0.99, 1.0, 2.5, 3.0, 7.0, None)] == [
        "< 1",
        "< 1",
        "1-2",
        "2-3",
        ">= 3",
        ">= 3",
        "no margin",
    ]


def test_ratings_and_the_best_response_per_margin_band() -> None:
    stats = CurationStats(PREF.kinds, PREF)
    # Margin 4: the judge and people both prefer response 1 and rate alike.
    stats.add(answered(PREF, record(judge_scores=(5.0, 1.0)), preference(5, 1)), "t")
    # Margin 1: the judge prefers response 2, people response 1; ratings differ.
    stats.add(answered(PREF, record(judge_scores=(3.0, 4.0)), preference(5, 2)), "t")
    # Margin 0: the judge has no best (a tie); people rate response 2 as the judge does (3).
    stats.add(answered(PREF, record(judge_scores=(3.0, 3.0)), preference(5, 3)), "t")
    # People gave no answer the judge can be compared with: not counted.
    stats.add(answered(PREF, record(judge_scores=(5.0, 1.0))), "t")
    # Never judged: not counted.
    stats.add(answered(PREF, record(), preference(5, 1)), "t")
    assert cells(stats) == {
        "best response": {">= 3": (1, 1), "1-2": (0, 1)},
        "ranking": {">= 3": (1, 1), "1-2": (0, 1)},
        "rating_response_1": {">= 3": (1, 1), "1-2": (0, 1), "< 1": (0, 1)},
        "rating_response_2": {">= 3": (1, 1), "1-2": (0, 1), "< 1": (1, 1)},
    }


def checklist(*met: list[str]) -> Judgment:
    ratings = [[Rating(aspect="additive", score=len(m), criteria_met=m)] for m in met]
    margin = max(map(len, met)) - min(map(len, met))
    return Judgment(rubric="additive", judge_model="j", ratings=ratings, margin=margin)


def test_criteria_agree_when_the_judge_found_met_exactly_the_criteria_people_chose() -> None:
    stats = CurationStats(CODE.kinds, CODE)
    rec = record().model_copy(
        update={"judgments": [checklist(["correct", "idiomatic"], ["correct"])]}
    )
    values = {"criteria_response_1": ["correct", "idiomatic"], "criteria_response_2": ["none"]}
    stats.add(answered(CODE, rec, values), "t")
    assert cells(stats) == {
        "best response": {"1-2": (1, 1)},
        "criteria_response_1": {"1-2": (1, 1)},
        "criteria_response_2": {"1-2": (0, 1)},
    }


def test_a_pairwise_verdict_has_no_margin_and_a_thumbs_verdict_compares_good_and_bad() -> None:
    stats = CurationStats(PREF.kinds, PREF)
    pairwise = Judgment(rubric="pairwise", judge_model="j", preferred=1)
    rec = record().model_copy(update={"judgments": [pairwise]})
    stats.add(answered(PREF, rec, preference(2, 5, best=2)), "t")
    assert cells(stats)["best response"] == {"no margin": (1, 1)}

    thumbs = CurationStats(THUMBS.kinds, THUMBS)
    one = (("s[::-1]", "model-a"),)
    for score, said in ((5.0, "good"), (1.0, "good"), (3.0, "bad")):
        rec = record(responses=one, judge_scores=(score,), instruction=f"{score}")
        thumbs.add(answered(THUMBS, rec, {"verdict": said}), "t")
    assert cells(thumbs) == {"verdict": {"< 1": (1, 2)}}  # the 3 is neither good nor bad


def test_review_reasons_count_auto_accepted_and_answered_records_apart(tmp_path: Path) -> None:
    stats = CurationStats(PREF.kinds, PREF)
    sure = ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)
    for i in range(2):
        rec = record(instruction=f"auto {i}", judge_scores=(5.0, 1.0))
        stats.add(aggregate_judged(rec.model_copy(update={"review": sure})), "t")
    close = record(instruction="close", judge_scores=(3.0, 2.5))
    stats.add(answered(PREF, close, preference(5, 1), reason=ReviewReason.low_margin), "t")
    audit = record(instruction="audit", judge_scores=(5.0, 1.0))
    stats.add(
        answered(PREF, audit, preference(1, 5, best=2), reason=ReviewReason.audit_sample), "t"
    )
    stats.add(aggregate_judged(record(instruction="no rule", judge_scores=(5.0, 1.0))), "t")
    data = stats.report("support", {})
    assert data.review_reasons == {
        "audit_sample": (0, 1),
        "judge_sure": (2, 0),
        "low_margin": (0, 1),
    }
    assert cells(stats)["best response"] == {"< 1": (1, 1), ">= 3": (0, 1)}

    html = write_report(data, tmp_path).read_text(encoding="utf-8")
    assert "<h3>Review reasons</h3>" in html
    assert re.search(r"<td>judge_sure</td><td class=\"num\">2</td><td class=\"num\">0</td>", html)
    assert "<h3>Judge and people</h3>" in html and "0/1 (0%)" in html
    assert (tmp_path / "plots" / "judge_agreement.png").is_file()


def test_counts_merged_from_chunks_equal_one_pass() -> None:
    aggregates = [
        answered(
            PREF, record(instruction=f"{i}", judge_scores=(5.0, float(i % 5))), preference(5, 1)
        )
        for i in range(10)
    ]
    whole = CurationStats(PREF.kinds, PREF)
    halves = [CurationStats(PREF.kinds, PREF) for _ in range(2)]
    merged = CurationStats({})
    for i, agg in enumerate(aggregates):
        whole.add(agg, "t")
        halves[i % 2].add(agg, "t")
    for half in halves:
        merged.merge(half)
    assert merged.report("t", {}) == whole.report("t", {})
