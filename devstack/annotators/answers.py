"""Plausible answers per question spec, which the built-in policies share.

Everything follows from one preferred order of the shown responses (best first): a rating is
high for the first and low for the last, a ranking is the order itself, the first meets every
criterion, a verdict is good for the first. `preferred_order` reads that order from the
suggestions (the judge's ranking, else its ratings, else its checklists, else its verdicts),
else from the judge's verdict on the Loopline record, else takes the responses as shown.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from devstack.annotators.base import Task
from shared.templates import CuratedPart, QuestionRole, QuestionSpec
from shared.verdict import judge_verdict

# What an edit appends to a text, so exports show which texts bots changed.
EDIT_SENTENCE = "Reviewed by an annotator: checked for accuracy and clarity."


def edited(text: str) -> str:
    """`text` as an annotator edited it: one sentence appended."""
    return f"{text.rstrip()}\n\n{EDIT_SENTENCE}" if text.strip() else EDIT_SENTENCE


def _specs(task: Task, role: QuestionRole) -> list[QuestionSpec]:
    return [spec for spec in task.questions if spec.role == role]


def _order_by(scores: Mapping[int, float], positions: int) -> list[int]:
    """Positions by descending score; unscored ones after, in shown order."""
    scored = sorted(scores, key=lambda p: (-scores[p], p))
    return scored + [p for p in range(positions) if p not in scores]


def _suggested_order(task: Task) -> list[int] | None:
    n = task.positions
    for spec in _specs(task, QuestionRole.ranking):
        value = task.suggestions.get(spec.name)
        if isinstance(value, list) and value:
            index = {label: i for i, label in enumerate(spec.labels)}
            ranked = [index[label] for label in value if label in index]
            return ranked + [p for p in range(n) if p not in ranked]
    scores: dict[int, float] = {}
    for spec in _specs(task, QuestionRole.rating):
        value = task.suggestions.get(spec.name)
        if isinstance(value, int | float) and spec.response is not None:
            scores[spec.response] = float(value)
    for spec in _specs(task, QuestionRole.criteria):
        value = task.suggestions.get(spec.name)
        if isinstance(value, list) and spec.response is not None:
            scores[spec.response] = float(len([v for v in value if v != spec.none_label]))
    for spec in _specs(task, QuestionRole.verdict):
        value = task.suggestions.get(spec.name)
        if isinstance(value, str) and spec.response is not None:
            scores[spec.response] = 1.0 if value in spec.good else 0.0
    return _order_by(scores, n) if scores else None


def _judged_order(task: Task) -> list[int] | None:
    if task.record is None:
        return None
    verdict = judge_verdict(task.record)
    if verdict is None or verdict.order is None:
        return None
    position = {index: p for p, index in enumerate(task.shown)}
    ranked = [position[i] for i in verdict.order if i in position]
    return ranked + [p for p in range(task.positions) if p not in ranked]


def preferred_order(task: Task) -> list[int]:
    """The shown responses' positions, best first."""
    return _suggested_order(task) or _judged_order(task) or list(range(task.positions))


def rating_for(spec: QuestionSpec, rank: int, count: int) -> int:
    """The rating of the response at `rank` (0 best) among `count`: the top of the scale for
    the best, the second lowest value for the worst, in between linearly."""
    top, low = len(spec.scale) - 1, min(1, len(spec.scale) - 1)
    if count <= 1:
        return spec.scale[top]
    step = (top - low) * rank / (count - 1)
    return spec.scale[top - math.floor(step + 0.5)]


def criteria_for(spec: QuestionSpec, rank: int, count: int) -> list[str]:
    """The criteria the response at `rank` meets: all for the best, fewer further down,
    "none" (or the first criterion, without a none label) for the worst of several."""
    criteria = [label for label in spec.labels if label != spec.none_label]
    if count <= 1 or rank == 0:
        kept = criteria
    else:
        kept = criteria[: len(criteria) * (count - 1 - rank) // count]
    if kept:
        return kept
    return [spec.none_label] if spec.none_label is not None else criteria[:1]


def flipped_criteria(spec: QuestionSpec, labels: Sequence[str]) -> list[str]:
    """The criteria not in `labels` (disagreeing with a checklist)."""
    criteria = [label for label in spec.labels if label != spec.none_label]
    other = [label for label in criteria if label not in labels]
    if other:
        return other
    return [spec.none_label] if spec.none_label is not None else criteria[:1]


def verdict_for(spec: QuestionSpec, good: bool) -> str:
    """The first good label, or the first label that is not good."""
    if good:
        return spec.good[0]
    return next(label for label in spec.labels if label not in spec.good)


def ranking_for(spec: QuestionSpec, order: Sequence[int]) -> list[str]:
    """The ranking's labels in `order` (label i names response i), every label once."""
    ranked = [spec.labels[p] for p in order if p < len(spec.labels)]
    return ranked + [label for label in spec.labels if label not in ranked]


def written_text(task: Task, order: Sequence[int]) -> str:
    """A text an annotator writes: the best shown response, else one made from the prompt."""
    for position in order:
        text = task.response_text(position)
        if text and text.strip():
            return text
    prompt = " ".join(task.prompt().split())[:300]
    return f"A careful answer to: {prompt}" if prompt else "A careful answer."


def curated_text(task: Task, spec: QuestionSpec, rng: random.Random, edit_rate: float) -> Any:
    """The final text of a curated part: the original (the suggestion, else the field),
    edited with probability `edit_rate` when it is the response; None for an optional part
    with no original."""
    original = task.suggestions.get(spec.name)
    if not isinstance(original, str):
        original = str(task.fields.get(spec.field or "", "") or "")
    edit = rng.random() < edit_rate
    if original.strip() and spec.field == CuratedPart.response and edit:
        return edited(original)
    if not original.strip() and spec.name not in task.required:
        return None
    return original
