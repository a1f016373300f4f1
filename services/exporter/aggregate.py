"""From a record and its annotators' responses (or its judge's verdict) to one aggregated row.

Rules, per question kind (the kinds come from the flow's Argilla template):

* discarded responses are excluded and counted; drafts are ignored and counted; a record whose
  responses were all discarded is `excluded` (it yields no training rows);
* label: majority vote; a tie breaks towards the label the question lists first, and the
  record is flagged for disagreement on that question (as for any non-unanimous vote);
* rating: mean and median; disagreement when two annotators are 2 or more points apart;
* ranking: mean rank per response (ties: lower response number first); disagreement when the
  annotators' first choices differ;
* multi-label: an option is kept when more than half the annotators chose it; disagreement
  when they did not all choose the same options;
* text: the most common final text (a tie goes to the latest response); disagreement when
  the texts differ.

The candidates, best first, are what the formats build rows from: the record's responses with
a score (mean human rating, criteria met, thumbs 1/0, or the judge's score for auto-accepted
records) plus a text an annotator wrote or corrected, which comes first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import Any, Literal

import argilla as rg

from services.argilla_publisher.templates import NONE_LABEL, curation_originals
from shared.events import AnnotatorResponse, CompletedRecord, Record, ResponseStatus
from shared.flows import AutoAccept
from shared.verdict import judge_verdict

QuestionKind = Literal["label", "multi_label", "rating", "ranking", "text"]

# Text questions of the built-in templates that hold a better response than the model's.
HUMAN_RESPONSE_QUESTIONS = ("corrected_response", "ideal_response", "final_response")
# Curation: the final version of each original field.
CURATION_FIELDS = {
    "final_category": "category",
    "final_instruction": "instruction",
    "final_context": "context",
    "final_response": "response",
}
HUMAN_MODEL = "human"
RATING_SPREAD = 2.0  # annotators this far apart on a rating disagree


def question_kinds(template: Any) -> dict[str, QuestionKind]:
    """The kind of each question of an Argilla template plugin (by its settings)."""
    kinds: dict[str, QuestionKind] = {}
    for question in template.settings(1).questions:
        if isinstance(question, rg.MultiLabelQuestion):
            kinds[question.name] = "multi_label"
        elif isinstance(question, rg.LabelQuestion):
            kinds[question.name] = "label"
        elif isinstance(question, rg.RatingQuestion):
            kinds[question.name] = "rating"
        elif isinstance(question, rg.RankingQuestion):
            kinds[question.name] = "ranking"
        else:
            kinds[question.name] = "text"
    return kinds


def label_order(template: Any) -> dict[str, list[str]]:
    """The labels each label question lists, in order (the tie-break order)."""
    orders: dict[str, list[str]] = {}
    for question in template.settings(1).questions:
        if isinstance(question, rg.LabelQuestion | rg.MultiLabelQuestion):
            orders[question.name] = list(question.labels)
    return orders


@dataclass(frozen=True)
class Questions:
    """What the exporter knows about a flow's Argilla questions."""

    kinds: Mapping[str, QuestionKind] = field(default_factory=dict)
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, template: Any | None) -> Questions:
        if template is None:
            return cls()
        return cls(question_kinds(template), label_order(template))


@dataclass(frozen=True)
class Candidate:
    """A response as the formats see it."""

    text: str
    model: str
    index: int | None  # into record.responses; None for a text an annotator wrote
    score: float | None  # higher is better
    acceptable: bool | None  # a clear yes/no on quality, when the answers give one


@dataclass(frozen=True)
class Aggregate:
    record: Record
    auto_accepted: bool
    dataset: str | None = None
    submitted: int = 0
    discarded: int = 0
    drafts: int = 0
    annotators: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    ratings: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, median)
    ranking: tuple[int, ...] = ()  # response indices, best first
    multi_labels: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    changed: tuple[str, ...] = ()  # curation: the fields whose final text differs
    disagreement: tuple[str, ...] = ()  # the questions annotators disagreed on
    candidates: tuple[Candidate, ...] = ()  # best first
    # Per question, each submitting annotator's value (for agreement statistics).
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def excluded(self) -> bool:
        """All responses discarded (or none submitted): no training rows from this record."""
        return not self.auto_accepted and self.submitted == 0

    @property
    def instruction(self) -> str:
        return self.texts.get("final_instruction") or self.record.instruction or ""

    @property
    def context(self) -> str:
        if "final_instruction" in self.texts:  # curated: the final context, possibly empty
            return self.texts.get("final_context", "")
        return self.record.context or ""

    def prompt_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (a conversation record keeps its turns)."""
        if self.record.messages and "final_instruction" not in self.texts:
            return [{"role": m.role.value, "content": m.content} for m in self.record.messages]
        text = self.instruction
        if self.context:
            text = f"{text}\n\n{self.context}"
        return [{"role": "user", "content": text}]

    def prompt_text(self) -> str:
        """The prompt as one string (a conversation as a transcript)."""
        if self.record.messages and "final_instruction" not in self.texts:
            return "\n\n".join(f"{m.role.value}: {m.content}" for m in self.record.messages)
        return f"{self.instruction}\n\n{self.context}" if self.context else self.instruction


def ranking_value(value: Any) -> tuple[str, ...]:
    """A ranking answer (`["response_2", ...]` or `[{"value": ..., "rank": n}]`), best first."""
    if not isinstance(value, list):
        return ()
    if all(isinstance(item, dict) for item in value):
        ranked = sorted(
            enumerate(value), key=lambda pair: (pair[1].get("rank") or pair[0] + 1, pair[0])
        )
        return tuple(str(item.get("value")) for _, item in ranked)
    return tuple(str(item) for item in value)


def _response_index(name: str, prefix: str) -> int | None:
    """`rating_response_2` with prefix `rating_response_` → index 1."""
    if not name.startswith(prefix):
        return None
    tail = name[len(prefix) :]
    return int(tail) - 1 if tail.isdigit() and int(tail) >= 1 else None


def _majority(values: Sequence[str], order: Sequence[str]) -> str:
    """The most common value, ties to the first in `order`."""
    counts = Counter(values)
    top = max(counts.values())
    tied = [v for v in counts if counts[v] == top]
    rank = {label: i for i, label in enumerate(order)}
    return min(tied, key=lambda v: (rank.get(v, len(rank)), v))


def _latest_common_text(answers: Sequence[tuple[str, AnnotatorResponse]]) -> str:
    counts = Counter(text for text, _ in answers)
    top = max(counts.values())
    tied = [(r.responded_at, text) for text, r in answers if counts[text] == top]
    return max(tied)[1]


def aggregate_completed(event: CompletedRecord, questions: Questions) -> Aggregate:
    """Aggregate the annotators' responses to one record."""
    record = event.record
    submitted = [r for r in event.responses if r.status == ResponseStatus.submitted]
    discarded = sum(r.status == ResponseStatus.discarded for r in event.responses)
    drafts = sum(r.status == ResponseStatus.draft for r in event.responses)
    labels: dict[str, str] = {}
    ratings: dict[str, tuple[float, float]] = {}
    multi: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    disagreement: list[str] = []
    answers: dict[str, dict[str, Any]] = {}
    mean_rank: dict[int, list[int]] = {}

    for question in sorted({q for r in submitted for q in r.values}):
        kind = questions.kinds.get(question) or _guess_kind(submitted, question)
        given = [r for r in submitted if r.values.get(question) is not None]
        if not given:
            continue
        # Each answer once, normalised: a label or text as str, a rating as float, a ranking
        # as a tuple best first, a multi-label choice as a sorted tuple.
        values = [_normalised(r.values[question], kind) for r in given]
        answers[question] = {r.annotator: v for r, v in zip(given, values, strict=True)}
        unanimous = len(set(values)) == 1
        if kind == "label":
            labels[question] = _majority(values, questions.labels.get(question, ()))
        elif kind == "rating":
            ratings[question] = (fmean(values), float(median(values)))
            unanimous = max(values) - min(values) < RATING_SPREAD
        elif kind == "ranking":
            for order in values:
                for rank, name in enumerate(order):
                    index = _response_index(name, "response_")
                    if index is not None:
                        mean_rank.setdefault(index, []).append(rank)
            unanimous = len({order[0] for order in values if order}) <= 1
        elif kind == "multi_label":
            options = sorted(set().union(*values))
            multi[question] = [o for o in options if sum(o in c for c in values) * 2 > len(values)]
        else:
            texts[question] = _latest_common_text(list(zip(values, given, strict=True)))
        if not unanimous:
            disagreement.append(question)

    ranking = tuple(sorted(mean_rank, key=lambda i: (fmean(mean_rank[i]), i)))
    changed: tuple[str, ...] = ()
    if any(question in texts for question in CURATION_FIELDS):
        originals = curation_originals(record)
        changed = tuple(
            sorted(
                field_name
                for question, field_name in CURATION_FIELDS.items()
                if question in texts and texts[question].strip() != originals[field_name].strip()
            )
        )
    return Aggregate(
        record=record,
        auto_accepted=False,
        dataset=event.dataset,
        submitted=len(submitted),
        discarded=discarded,
        drafts=drafts,
        annotators=tuple(sorted({r.annotator for r in submitted})),
        labels=labels,
        ratings=ratings,
        ranking=ranking,
        multi_labels=multi,
        texts=texts,
        changed=changed,
        disagreement=tuple(disagreement),
        answers=answers,
        candidates=_human_candidates(record, ratings, multi, labels, ranking, texts),
    )


def _guess_kind(responses: Sequence[AnnotatorResponse], question: str) -> QuestionKind:
    """A question the template does not know (it changed since): judge by the values."""
    value = next(r.values[question] for r in responses if question in r.values)
    if isinstance(value, bool):
        return "label"
    if isinstance(value, int | float):
        return "rating"
    if isinstance(value, list):
        return "ranking" if value and isinstance(value[0], dict) else "multi_label"
    return "text"


def _normalised(value: Any, kind: QuestionKind) -> Any:
    """An answer in a comparable, hashable form."""
    if kind == "ranking":
        return ranking_value(value)
    if kind == "multi_label":
        return tuple(sorted(value)) if isinstance(value, list) else (str(value),)
    if kind == "rating":
        return float(value)
    return str(value)


def _human_candidates(
    record: Record,
    ratings: Mapping[str, tuple[float, float]],
    multi_labels: Mapping[str, list[str]],
    labels: Mapping[str, str],
    ranking: tuple[int, ...],
    texts: Mapping[str, str],
) -> tuple[Candidate, ...]:
    """The record's responses scored by the annotators' answers, plus any text they wrote."""
    n = len(record.responses)
    scores: list[float | None] = [None] * n
    acceptable: list[bool | None] = [None] * n
    for question, (mean, _) in ratings.items():
        index = _response_index(question, "rating_response_")
        if index is not None and index < n:
            scores[index] = mean
            acceptable[index] = True if mean >= 4 else False if mean <= 2 else None
    for question, met in multi_labels.items():
        index = _response_index(question, "criteria_response_")
        if index is not None and index < n:
            criteria = [m for m in met if m != NONE_LABEL]
            scores[index] = float(len(criteria))
    if "verdict" in labels and n:
        good = labels["verdict"] == "good"
        scores[0], acceptable[0] = (1.0 if good else 0.0), good
    if ranking:
        order = list(ranking) + [i for i in range(n) if i not in ranking]
    else:
        unscored = -1e9
        order = sorted(range(n), key=lambda i: (-(scores[i] or unscored), i))
    candidates = [
        Candidate(
            text=record.responses[i].text,
            model=record.responses[i].model or record.responses[i].source,
            index=i,
            score=scores[i],
            acceptable=acceptable[i],
        )
        for i in order
    ]
    written = next((texts[q] for q in HUMAN_RESPONSE_QUESTIONS if texts.get(q, "").strip()), None)
    # A text the annotators wrote or corrected beats every model response (unless it is one).
    if written is not None and all(written.strip() != c.text.strip() for c in candidates):
        best = max((c.score for c in candidates if c.score is not None), default=None)
        candidates.insert(0, Candidate(written, HUMAN_MODEL, None, best, True))
    return tuple(candidates)


def auto_accepts(record: Record, rule: AutoAccept) -> bool:
    """Whether the flow's `auto_accept` rule accepts this judged record."""
    ok = [j for j in record.judgments if j.status == "ok"]
    if len(ok) < rule.min_repeats or not record.responses:
        return False
    if any((j.margin if j.margin is not None else 0.0) < rule.min_margin for j in ok):
        return False
    if rule.min_agreement is not None:
        agreement = next((j.agreement for j in ok if j.agreement is not None), None)
        if agreement is None or agreement < rule.min_agreement:
            return False
    return True


def judge_scores_by_index(record: Record) -> dict[int | None, float | None]:
    """The judge's score per response index (empty when no judgment scored them)."""
    verdict = judge_verdict(record)
    return dict(enumerate(verdict.scores)) if verdict is not None else {}


def aggregate_judged(record: Record) -> Aggregate:
    """A record accepted on its judge's verdict alone (no people)."""
    verdict = judge_verdict(record)
    n = len(record.responses)
    scores: tuple[float | None, ...] = verdict.scores if verdict else tuple(None for _ in range(n))
    order = list(verdict.order) if verdict and verdict.order else list(range(n))
    five_point = bool(verdict and verdict.five_point)
    candidates = []
    for i in order:
        score = scores[i]
        acceptable = None
        if five_point and score is not None:
            acceptable = True if score >= 4 else False if score <= 2 else None
        response = record.responses[i]
        candidates.append(
            Candidate(response.text, response.model or response.source, i, score, acceptable)
        )
    return Aggregate(
        record=record, auto_accepted=True, ranking=tuple(order), candidates=tuple(candidates)
    )
