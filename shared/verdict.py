"""The judge's verdict on a record's responses, as the publisher suggests it and the exporter
accepts it: scores per response, an order, the best response, and how sure the judge was."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from shared.events import Judgment, Rating, Record

MAX_AGENT_CHARS = 200  # Argilla's limit on a suggestion's agent name


def agent_name(name: str) -> str:
    """`name` in the characters Argilla allows for a suggestion's agent."""
    cleaned = re.sub(r"[^A-Za-z0-9\-_:./\s]", "-", name).strip()[:MAX_AGENT_CHARS]
    return cleaned if re.search(r"[A-Za-z0-9]", cleaned) else "judge"


def overall_score(ratings: Sequence[Rating]) -> float | None:
    """A response's overall score: its `overall` rating, else the mean of its ratings."""
    for rating in ratings:
        if rating.aspect == "overall":
            return rating.score
    return fmean(r.score for r in ratings) if ratings else None


@dataclass(frozen=True)
class Verdict:
    """What the judge said about a record's responses, aggregated over repeated judgments.

    ``scores[i]`` is response i's mean overall score (None if unscored); ``five_point`` says
    whether the scores are on the 1-5 scale (not counts of criteria met from a checklist
    rubric); ``order`` lists the response indices best first when the judge ranked them all;
    ``best`` is the index of the best response (among equals, the app's, else the first).
    """

    agent: str
    scores: tuple[float | None, ...]
    five_point: bool
    order: tuple[int, ...] | None
    best: int | None
    confidence: float | None


def is_checklist(judgment: Judgment) -> bool:
    """Whether `judgment` counts criteria met (the ``additive`` rubric) instead of scoring 1-5."""
    return judgment.rubric == "additive" or any(
        rating.criteria_met for ratings in judgment.ratings for rating in ratings
    )


def first_group(judgments: Sequence[Judgment]) -> list[Judgment]:
    """The judgments of the first (rubric, judge model) pair among `judgments`."""
    if not judgments:
        return []
    key = (judgments[0].rubric, judgments[0].judge_model)
    return [j for j in judgments if (j.rubric, j.judge_model) == key]


def _confidence(group: Sequence[Judgment]) -> float | None:
    if len(group) < 2:
        return None
    return next((j.agreement for j in group if j.agreement is not None), None)


def judge_verdict(record: Record) -> Verdict | None:
    """The verdict of the record's first rubric and judge that rated or compared the responses.

    Judgments that score every response win over checklist counts, which win over pairwise
    comparisons. None when no ok judgment says anything about the responses.
    """
    n = len(record.responses)
    ok = [j for j in record.judgments if j.status == "ok"]
    rated_all = [j for j in ok if n and len(j.ratings) == n and any(j.ratings)]
    rated = first_group([j for j in rated_all if not is_checklist(j)])
    rated = rated or first_group(rated_all)
    if rated:
        scores: list[float | None] = []
        for i in range(n):
            known = [s for j in rated if (s := overall_score(j.ratings[i])) is not None]
            scores.append(fmean(known) if known else None)
        order: tuple[int, ...] | None = None
        best: int | None = None
        if all(s is not None for s in scores):
            order = tuple(sorted(range(n), key=lambda i: (-(scores[i] or 0.0), i)))
            top = scores[order[0]]
            tops = [i for i in order if scores[i] == top]
            app = [i for i in tops if record.responses[i].source == "app"]
            best = app[0] if app else tops[0]
        return Verdict(
            agent=agent_name(rated[0].judge_model),
            scores=tuple(scores),
            five_point=not is_checklist(rated[0]),
            order=order,
            best=best,
            confidence=_confidence(rated),
        )
    compared = first_group([j for j in ok if not j.ratings and (j.tie or j.preferred is not None)])
    if not compared:
        return None
    # One vote per judgment: a response index, or -1 for a tie.
    votes = Counter(
        -1 if j.tie else j.preferred
        for j in compared
        if j.tie or (j.preferred is not None and 0 <= j.preferred < n)
    )
    ranked = votes.most_common()
    if not ranked:
        return None
    winner, count = ranked[0]
    contested = len(ranked) > 1 and ranked[1][1] == count
    winner_index = None if winner is None or winner < 0 or contested else winner
    order = None
    if winner_index is not None:
        order = (winner_index, *(i for i in range(n) if i != winner_index))
    return Verdict(
        agent=agent_name(compared[0].judge_model),
        scores=tuple(None for _ in range(n)),
        five_point=False,
        order=order,
        best=winner_index,
        confidence=_confidence(compared),
    )


def to_five_point(score: float) -> int:
    """A judge score on the 1-5 scale, rounded half up and clamped to 1..5."""
    return max(1, min(5, math.floor(score + 0.5)))
