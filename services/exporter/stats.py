"""What a version's curation report counts, gathered one aggregated record at a time.

Only counters live here (statuses, review reasons, changed fields, rating histograms,
win-rate tallies, agreement sums and the judge's agreement with people), so memory stays flat
however many records an export reads. Counts merge (`CurationStats.merge`): the store keeps
them per bucket of a format (`to_bytes`, `from_bytes`), so a version's figures over all records
are the merge of its buckets', recomputed only for the buckets that changed.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Mapping
from itertools import combinations
from typing import Any

from services.exporter.aggregate import Aggregate, Questions
from services.exporter.agreement import AgreementAccumulator, Level
from services.exporter.judge_agreement import JudgeAgreement
from services.exporter.report import AgreementRow, ReportData, WinRate
from shared.templates import QuestionKind

# Free-text answers (corrections, edits) have no agreement figure: each one is new.
# Bumped when what `CurationStats.to_bytes` keeps changes: older stored counts are then
# refused (`from_bytes` raises ValueError) and recomputed from the records.
STATE_VERSION = 1

LEVEL_OF: dict[QuestionKind, Level] = {
    "rating": "interval",
    "label": "nominal",
    "multi_label": "nominal",
    "ranking": "nominal",
}


class WinRateTally:
    """Pairwise outcomes between models: within a record, the higher score wins.

    Candidates without scores count by their rank (people's ranking, a pairwise judge's
    verdict); equal scores or ranks tie; candidates with neither are not compared, nor are
    two candidates of the same model.
    """

    def __init__(self) -> None:
        self._tally: dict[tuple[str, str], list[int]] = {}  # (a, b), a < b → [a wins, b, ties]

    def add(self, agg: Aggregate) -> None:
        if agg.excluded:
            return
        for a, b in combinations(agg.candidates, 2):  # a is listed above b
            if a.model == b.model:
                continue
            if a.score is not None and b.score is not None:
                winner = a.model if a.score > b.score else b.model if b.score > a.score else None
            elif a.rank is not None and b.rank is not None:
                winner = a.model if a.rank < b.rank else b.model if b.rank < a.rank else None
            else:
                continue
            first, second = sorted((a.model, b.model))
            tally = self._tally.setdefault((first, second), [0, 0, 0])
            tally[2 if winner is None else 0 if winner == first else 1] += 1

    def merge(self, other: WinRateTally) -> None:
        for pair, counts in other._tally.items():
            mine = self._tally.setdefault(pair, [0, 0, 0])
            for k, n in enumerate(counts):
                mine[k] += n

    def rates(self) -> list[WinRate]:
        return [WinRate(a, b, *counts) for (a, b), counts in sorted(self._tally.items())]


class CurationStats:
    """Counts for the report, fed every aggregated record of an export.

    `questions` (the flow's template's) say which of people's answers the judge's verdict can
    be compared with; without them only the best response is compared.
    """

    def __init__(
        self, kinds: Mapping[str, QuestionKind], questions: Questions | None = None
    ) -> None:
        self.kinds = kinds
        self.records = 0
        self.statuses: Counter[str] = Counter()
        # (review reason, auto-accepted?) → records, for records that carry a decision
        self.reviews: Counter[tuple[str, bool]] = Counter()
        self.judge = JudgeAgreement(questions or Questions())
        self.changed: Counter[str] = Counter()
        self.pairs: Counter[str] = Counter()  # preference pairs kept, flipped or discarded
        self.curated = 0
        self.ratings: dict[str, Counter[int]] = {}
        self.disagreements = 0
        self.wins = WinRateTally()
        self._agreement: dict[str, AgreementAccumulator] = {}
        self.first_time: str | None = None
        self.last_time: str | None = None

    def _saw(self, moment: str) -> None:
        if self.first_time is None or moment < self.first_time:
            self.first_time = moment
        if self.last_time is None or moment > self.last_time:
            self.last_time = moment

    def add(self, agg: Aggregate, event_time: str) -> None:
        self._saw(event_time)
        self.records += 1
        statuses = self.statuses
        statuses["responses submitted"] += agg.submitted
        statuses["responses discarded"] += agg.discarded
        statuses["responses draft"] += agg.drafts
        if agg.auto_accepted:
            statuses["records auto-accepted"] += 1
        elif agg.excluded:
            statuses["records all discarded"] += 1
        else:
            statuses["records annotated"] += 1
        if agg.record.review is not None:
            self.reviews[agg.record.review.reason.value, agg.auto_accepted] += 1
        self.judge.add(agg)
        if agg.curated:
            self.curated += 1
            for name in agg.changed:
                self.changed[name] += 1
        outcome = pair_outcome(agg)
        if outcome is not None:
            self.pairs[outcome] += 1
        if agg.disagreement:
            self.disagreements += 1
        for question, by_annotator in agg.answers.items():
            accumulator = self._agreement.get(question) or self._accumulator(question)
            if accumulator is None:  # a free-text question
                continue
            histogram = self.ratings.get(question)
            if histogram is not None:
                for value in by_annotator.values():
                    histogram[round(value)] += 1
            accumulator.add(by_annotator)
        self.wins.add(agg)

    def merge(self, other: CurationStats) -> None:
        """Add the counts of `other` (the records after these): as if one had seen them all."""
        for moment in (other.first_time, other.last_time):
            if moment is not None:
                self._saw(moment)
        self.records += other.records
        self.statuses.update(other.statuses)
        self.reviews.update(other.reviews)
        self.judge.merge(other.judge)
        self.changed.update(other.changed)
        self.pairs.update(other.pairs)
        self.curated += other.curated
        self.disagreements += other.disagreements
        self.wins.merge(other.wins)
        for question, accumulator in other._agreement.items():
            mine = self._agreement.get(question)
            if mine is None:
                mine = self._agreement[question] = AgreementAccumulator(question, accumulator.level)
            mine.merge(accumulator)
        for question, histogram in other.ratings.items():
            self.ratings.setdefault(question, Counter()).update(histogram)

    def to_bytes(self) -> bytes:
        """The counts, to keep (in the exporter's own store: pickle, read back only from
        there); not the flow's question kinds, which a merge does not need."""
        state: dict[str, Any] = {k: v for k, v in vars(self).items() if k not in _CONFIG}
        state["judge"] = (self.judge.agreed, self.judge.compared)
        return pickle.dumps((STATE_VERSION, state), protocol=5)

    @classmethod
    def from_bytes(cls, blob: bytes) -> CurationStats:
        """Counts kept by `to_bytes`, to merge; ValueError for another version's."""
        version, state = pickle.loads(blob)
        found = cls({})
        expected = set(vars(found)) - _CONFIG
        if version != STATE_VERSION or set(state) != expected:
            raise ValueError(f"stored curation counts of another version ({version})")
        found.judge.agreed, found.judge.compared = state.pop("judge")
        for name, value in state.items():
            setattr(found, name, value)
        return found

    def _accumulator(self, question: str) -> AgreementAccumulator | None:
        """A question's first answers: set up its agreement (and histogram, for ratings);
        None for a question without agreement (free text)."""
        kind = self.kinds.get(question, "text")
        level = LEVEL_OF.get(kind)
        if level is None:
            return None
        if kind == "rating":
            self.ratings[question] = Counter()
        accumulator = self._agreement[question] = AgreementAccumulator(question, level)
        return accumulator

    def report(self, title: str, summary: Mapping[str, int | str]) -> ReportData:
        agreement = [acc.result() for _, acc in sorted(self._agreement.items())]
        return ReportData(
            title=title,
            summary={
                **summary,
                "first record time": self.first_time or "-",
                "last record time": self.last_time or "-",
            },
            status_counts=dict(self.statuses),
            changed_fields=dict(self.changed),
            changed_of=self.curated,
            rating_distributions={q: dict(h) for q, h in self.ratings.items()},
            win_rates=self.wins.rates(),
            agreement=[
                AgreementRow(
                    a.question, a.level, a.units, a.annotators, a.percent, a.alpha, a.kappa
                )
                for a in agreement
            ],
            disagreements=self.disagreements,
            review_reasons={
                reason: (self.reviews[reason, True], self.reviews[reason, False])
                for reason in sorted({reason for reason, _ in self.reviews})
            },
            judge_agreement=self.judge.rows(),
            preference_pairs=dict(self.pairs),
        )


_CONFIG = {"kinds"}  # what a CurationStats is made with, not what it counted


def pair_outcome(agg: Aggregate) -> str | None:
    """What became of an imported preference pair (`metadata.preference`: the indices of its
    chosen and rejected responses): `kept` (the chosen one is still the best), `flipped` (the
    rejected one is now the best), `discarded` (people discarded it), `rewritten` (a text
    people wrote beats both); None for a record that is not such a pair or not decided."""
    pair = agg.record.metadata.get("preference")
    if not isinstance(pair, dict) or not {"chosen", "rejected"} <= set(pair):
        return None
    if agg.excluded:
        return "discarded"
    best = agg.candidates[0] if agg.candidates else None
    if best is None:
        return None
    if best.index is None:
        return "rewritten"
    if best.index == pair["chosen"]:
        return "kept"
    return "flipped" if best.index == pair["rejected"] else None
