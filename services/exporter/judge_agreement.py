"""How often the judge agreed with people, on the records both answered, per question and per
band of the judge's margin: whether a flow's `publish.when.margin_below` bound is safe.

A record is compared when people answered it (not all discarded) and it has a successful
judgment. Agreement, per question that maps to something the judge said:

* best response (every record with two or more responses): the judge's best response (its
  top score alone, or a pairwise winner) is the response people put first (their top score or
  rank alone; a text they wrote does not count);
* a ranking: people's first choice is the judge's best response;
* a rating of one response: people's mean rating and the judge's score round to the same
  point of the 1-5 scale (judges that score 1-5);
* criteria of one response: the criteria people chose are those the judge found met (the
  majority of its repeated judgments);
* a verdict on one response (good/bad): the judge's score says the same (4-5 good, 1-2 bad;
  a 3 is not compared).

Where either side has no answer (a tie, no score), the record is not compared on that question.
The margin is the smallest over the record's judgments (best minus worst score); a pairwise
judge has none. Only counters are kept, so chunks of records merge in any number of processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from services.exporter.aggregate import Aggregate, Candidate, Questions, better
from services.exporter.aggregate import responses_asked_about as asked_about
from services.exporter.report import MARGIN_BANDS, JudgeAgreementRow
from shared.events import Record
from shared.templates import QuestionRole
from shared.verdict import Verdict, first_group, is_checklist, judge_verdict, to_five_point

BEST = "best response"
BAND_EDGES = (1.0, 2.0, 3.0)  # the lower bounds of MARGIN_BANDS after the first


def band(margin: float | None) -> str:
    """The band of a judge's margin: `< 1`, `1-2`, `2-3`, `>= 3` (lower bounds included)."""
    if margin is None:
        return MARGIN_BANDS[-1]
    return MARGIN_BANDS[sum(margin >= edge for edge in BAND_EDGES)]


def judge_margin(record: Record) -> float | None:
    margins = [j.margin for j in record.judgments if j.status == "ok" and j.margin is not None]
    return min(margins) if margins else None


def judge_best(verdict: Verdict) -> int | None:
    """The judge's best response, when it stands alone (no tie at the top)."""
    if verdict.best is None:
        return None
    scores = [s for s in verdict.scores if s is not None]
    if scores and sorted(scores, reverse=True)[1:2] == [verdict.scores[verdict.best]]:
        return None
    return verdict.best


def people_best(candidates: Sequence[Candidate]) -> int | None:
    """The response people put first, when it stands alone (texts they wrote aside)."""
    responses = [c for c in candidates if c.index is not None]
    if len(responses) < 2 or not better(responses[0], responses[1]):
        return None
    return responses[0].index


def criteria_met_by_judge(record: Record, index: int) -> set[str] | None:
    """The criteria a checklist judge found met by response `index` (majority of repeats)."""
    n = len(record.responses)
    checked = first_group(
        [
            j
            for j in record.judgments
            if j.status == "ok" and len(j.ratings) == n and is_checklist(j)
        ]
    )
    if not checked:
        return None
    votes = Counter(
        c for j in checked for c in {c for r in j.ratings[index] for c in r.criteria_met}
    )
    return {criterion for criterion, count in votes.items() if count * 2 > len(checked)}


class JudgeAgreement:
    """Agreed and compared records per (question, margin band)."""

    def __init__(self, questions: Questions) -> None:
        self.questions = questions
        self.agreed: Counter[tuple[str, str]] = Counter()
        self.compared: Counter[tuple[str, str]] = Counter()

    def _count(self, question: str, where: str, agreed: bool) -> None:
        self.compared[question, where] += 1
        self.agreed[question, where] += agreed

    def add(self, agg: Aggregate) -> None:
        if agg.auto_accepted or agg.excluded:
            return
        verdict = judge_verdict(agg.record)
        if verdict is None:
            return
        where = band(judge_margin(agg.record))
        best = judge_best(verdict)
        theirs = people_best(agg.candidates)
        if best is not None and theirs is not None:
            self._count(BEST, where, best == theirs)
        for question, agreed in self._by_question(agg, verdict, best):
            self._count(question, where, agreed)

    def _by_question(
        self, agg: Aggregate, verdict: Verdict, best: int | None
    ) -> list[tuple[str, bool]]:
        """(question, agreed) for every question of the record both sides answered."""
        found: list[tuple[str, bool]] = []
        asked = asked_about(self.questions, agg.record)
        for name, spec in self.questions.specs.items():
            index = asked.get(name)
            if spec.role == QuestionRole.ranking and name in agg.answers and best is not None:
                ranked = sorted((c for c in agg.candidates if c.rank is not None), key=_rank)
                if len(ranked) >= 2 and better(ranked[0], ranked[1]):
                    found.append((name, ranked[0].index == best))
            if index is None:
                continue
            score = verdict.scores[index] if verdict.five_point else None
            if spec.role == QuestionRole.rating and name in agg.ratings and score is not None:
                mean = agg.ratings[name][0]
                found.append((name, to_five_point(mean) == to_five_point(score)))
            elif spec.role == QuestionRole.criteria and name in agg.multi_labels:
                judged = criteria_met_by_judge(agg.record, index)
                if judged is not None:
                    chosen = {c for c in agg.multi_labels[name] if c != spec.none_label}
                    found.append((name, chosen == judged))
            elif spec.role == QuestionRole.verdict and name in agg.labels and score is not None:
                judge_good = True if score >= 4 else False if score <= 2 else None
                if judge_good is not None:
                    found.append((name, (agg.labels[name] in spec.good) == judge_good))
        return found

    def merge(self, other: JudgeAgreement) -> None:
        self.agreed.update(other.agreed)
        self.compared.update(other.compared)

    def rows(self) -> list[JudgeAgreementRow]:
        """One row per question (best response first), with (agreed, compared) per band."""
        questions = sorted({q for q, _ in self.compared}, key=lambda q: (q != BEST, q))
        return [
            JudgeAgreementRow(
                question,
                tuple((self.agreed[question, b], self.compared[question, b]) for b in MARGIN_BANDS),
            )
            for question in questions
        ]


def _rank(candidate: Candidate) -> float:
    return candidate.rank if candidate.rank is not None else float("inf")
