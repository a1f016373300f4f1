"""Which judged records the publisher sends to people (a flow's `publish.when`), and how the
decision shows in Argilla.

The decision is `shared.review.review`, the one rule the exporter applies too: a record it
does not send to people is auto-accepted by the exporter, without any message between them.
A record sent to people carries the decision on the Loopline record (`Record.review`, kept in
the Argilla record's `loopline_record`, so `records.completed` carries it) and in its Argilla
metadata: `review_reason`, a terms property annotators and owners can filter on, and
`review_detail` (extra metadata, e.g. "margin 0.5 < 2").

Only a flow with `when` gets the `review_reason` property: the settings of every other flow's
datasets stay exactly the template's, so existing datasets do not drift.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import argilla as rg

from services.argilla_publisher.templates.base import sdk_client
from shared.events import Record, ReviewDecision, ReviewReason
from shared.flows import PublishRef, ReviewWhen
from shared.review import review

log = logging.getLogger("loopline.argilla_publisher")

REVIEW_REASON = "review_reason"
REVIEW_DETAIL = "review_detail"


def review_settings(settings: rg.Settings, ref: PublishRef) -> rg.Settings:
    """`settings` with the `review_reason` property when the flow chooses what people see."""
    if ref.when is None:
        return settings
    if any(prop.name == REVIEW_REASON for prop in settings.metadata):
        raise ValueError(
            f"template {ref.plugin!r} declares a {REVIEW_REASON!r} metadata property itself; "
            "the publisher adds that one for `publish.when`"
        )
    settings.add(
        rg.TermsMetadataProperty(name=REVIEW_REASON, title="Why people see it", client=sdk_client())
    )
    return settings


def decide(record: Record, when: ReviewWhen | None) -> tuple[Record, ReviewDecision | None]:
    """The record carrying its decision, and the decision (None: no `when`, people see all)."""
    if when is None:
        return record, None
    decision = review(record, when)
    return record.model_copy(update={"review": decision}), decision


def mark(argilla_record: Any, decision: ReviewDecision | None) -> Any:
    """The Argilla record with the decision in its metadata (nothing without a decision)."""
    if decision is not None:
        argilla_record.metadata[REVIEW_REASON] = decision.reason.value
        if decision.detail:
            argilla_record.metadata[REVIEW_DETAIL] = decision.detail
    return argilla_record


@dataclass
class ReviewTally:
    """Decisions per flow and reason, since the last `flush`."""

    to_people: dict[str, Counter[ReviewReason]] = field(default_factory=dict)
    auto_accepted: dict[str, Counter[ReviewReason]] = field(default_factory=dict)

    def add(self, flow: str, decision: ReviewDecision) -> None:
        side = self.to_people if decision.to_people else self.auto_accepted
        side.setdefault(flow, Counter())[decision.reason] += 1

    def lines(self) -> list[str]:
        """One line per flow, e.g. "flow default: 12 to people (low_margin 9, audit_sample 3),
        40 auto-accepted (judge_sure 40)"."""
        flows = sorted(set(self.to_people) | set(self.auto_accepted))
        return [
            f"flow {flow}: {_counts(self.to_people.get(flow), 'to people')}, "
            f"{_counts(self.auto_accepted.get(flow), 'auto-accepted')}"
            for flow in flows
        ]

    def flush(self) -> None:
        """Log the counts (INFO) and start again."""
        for line in self.lines():
            log.info("argilla-publisher: %s", line)
        self.to_people.clear()
        self.auto_accepted.clear()


def _counts(counts: Counter[ReviewReason] | None, what: str) -> str:
    """ "12 to people (low_margin 9, audit_sample 3)", or "0 to people"."""
    if not counts:
        return f"0 {what}"
    by_reason = ", ".join(f"{reason.value} {n}" for reason, n in counts.most_common())
    return f"{sum(counts.values())} {what} ({by_reason})"
