"""Whether people see a judged record, and why: one rule that the publisher and the exporter
both apply (a flow's `publish.when`), so a record not sent to people is auto-accepted without
any message between them. The rule depends only on the record (its judgments and its id), so
both services reach the same decision, on every redelivery.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from shared.events import Record
from shared.flows import ReviewWhen
from shared.hashing import stable_fraction

AUDIT_SEED = "loopline-audit"


class ReviewReason(StrEnum):
    """Why a record went to people, or why it did not."""

    every_record = "every_record"  # the flow has no `when`: people see everything
    judgment_failed = "judgment_failed"
    low_margin = "low_margin"
    disagreement = "disagreement"
    audit_sample = "audit_sample"
    judge_sure = "judge_sure"  # none of the above: auto-accepted


class ReviewDecision(BaseModel):
    """Where a judged record goes: to people (`to_people`) or auto-accepted, and why."""

    model_config = ConfigDict(frozen=True)

    to_people: bool
    reason: ReviewReason
    detail: str = ""


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
    if when.margin_below is not None:
        margins = [j.margin for j in ok if j.margin is not None]
        smallest = min(margins) if margins else None
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
