"""Whether people see a judged record, and why: one rule that the publisher and the exporter
both apply (a flow's `publish.when`), so a record not sent to people is auto-accepted without
any message between them. The rule depends only on the record (its judgments and its id), so
both services reach the same decision, on every redelivery.
"""

from __future__ import annotations

from shared.events import Judgment, Record, ReviewDecision, ReviewReason
from shared.flows import ReviewWhen
from shared.hashing import stable_fraction

__all__ = ["AUDIT_SEED", "ReviewDecision", "ReviewReason", "review"]

AUDIT_SEED = "loopline-audit"


def review(record: Record, when: ReviewWhen | None) -> ReviewDecision:
    """The decision of `when` for `record` (None: every record goes to people)."""
    if when is None:
        return ReviewDecision(to_people=True, reason=ReviewReason.every_record)
    ok = [j for j in record.judgments if j.status == "ok"]
    if when.judgment_failed and (not ok or len(ok) < len(record.judgments)):
        failed = len(record.judgments) - len(ok)
        return ReviewDecision(
            to_people=True,
            reason=ReviewReason.judgment_failed,
            detail=f"{failed} of {len(record.judgments)} judgment(s) failed"
            if record.judgments
            else "not judged",
        )
    # A pairwise verdict scores no response, so it has no margin: a preference says nothing
    # about one (the bound does not apply to it), a tie is a margin of 0.
    scored = [j for j in ok if not _pairwise_preference(j)]
    if when.margin_below is not None and (scored or not ok):
        margins = [_margin(j) for j in scored]
        known = [m for m in margins if m is not None]
        smallest = min(known) if known else None
        if smallest is None or smallest < when.margin_below:
            shown = "no margin" if smallest is None else f"margin {smallest:g}"
            return ReviewDecision(
                to_people=True,
                reason=ReviewReason.low_margin,
                detail=f"{shown} < {when.margin_below:g}",
            )
    if when.agreement_below is not None:
        agreement = next((j.agreement for j in ok if j.agreement is not None), None)
        if agreement is not None and agreement < when.agreement_below:
            return ReviewDecision(
                to_people=True,
                reason=ReviewReason.disagreement,
                detail=f"agreement {agreement:g} < {when.agreement_below:g}",
            )
    if when.sample_rate > 0 and stable_fraction(AUDIT_SEED, record.record_id) < when.sample_rate:
        return ReviewDecision(
            to_people=True,
            reason=ReviewReason.audit_sample,
            detail=f"audit sample ({when.sample_rate:.0%})",
        )
    return ReviewDecision(to_people=False, reason=ReviewReason.judge_sure)


def _pairwise_preference(judgment: Judgment) -> bool:
    """A pairwise verdict naming a better response (no ratings, no tie)."""
    return not judgment.ratings and judgment.preferred is not None and not judgment.tie


def _margin(judgment: Judgment) -> float | None:
    """Best minus worst score; a pairwise tie is 0; None when the judge scored nothing."""
    if judgment.margin is not None:
        return judgment.margin
    return 0.0 if not judgment.ratings and judgment.tie else None
