"""From a record and its annotators' responses (or its judge's verdict) to one aggregated row.

The flow's template says what each question is (`shared.templates.QuestionSpec`): its kind
decides how answers are combined, its role what they say about the responses. Rules, per kind:

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

A question the template does not declare (it changed since) is combined by the kind its
values look like, and plays no role.

The candidates, best first, are what the formats build rows from: the record's responses with
a score (mean human rating, criteria met, a good/bad verdict as 1/0, or the judge's score for
auto-accepted records) plus a text an annotator wrote or corrected, which comes first.
Good/bad (`Candidate.acceptable`, for `kto`): a mean rating in the top quarter of its scale is
good, in the bottom quarter bad; a thumbs verdict says it; criteria (people's or the
`additive` judge's) make a response good when it meets all of them, bad when it meets a
quarter of them or fewer. A rank (`Candidate.rank`) comes from people's ranking (mean rank) or
a pairwise judge (its winner 0, the other 1; a tie 0 for both); records with neither a judge
nor people keep their responses in order, without scores or ranks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import Any

from shared.events import AnnotatorResponse, CompletedRecord, Record, ResponseStatus
from shared.flows import AutoAccept
from shared.templates import CuratedPart, QuestionKind, QuestionRole, QuestionSpec, Template
from shared.verdict import judge_verdict

HUMAN_MODEL = "human"
RATING_SPREAD = 2.0  # annotators this far apart on a rating disagree
# A mean rating in the top quarter of its scale is good, in the bottom quarter bad (on 1-5:
# 4 and above, 2 and below).
GOOD_SHARE, BAD_SHARE = 0.75, 0.25


@dataclass(frozen=True)
class Questions:
    """What the exporter knows about a flow's questions: its template's specs, by name."""

    specs: Mapping[str, QuestionSpec] = field(default_factory=dict)
    template: Template | None = None

    @classmethod
    def of(cls, template: Template | None) -> Questions:
        if template is None:
            return cls()
        return cls({spec.name: spec for spec in template.questions()}, template)

    @property
    def kinds(self) -> dict[str, QuestionKind]:
        return {name: spec.kind for name, spec in self.specs.items()}

    @property
    def labels(self) -> dict[str, list[str]]:
        """The labels each label question lists, in order (the tie-break order)."""
        return {
            name: list(spec.labels)
            for name, spec in self.specs.items()
            if spec.kind in ("label", "multi_label")
        }

    def shown(self, record: Record) -> tuple[int, ...]:
        """The record's responses as its Argilla record shows them (see `Template`)."""
        if self.template is None:
            return tuple(range(len(record.responses)))
        return self.template.shown_responses(record)

    def originals(self, record: Record) -> dict[str, str]:
        return {} if self.template is None else self.template.originals(record)


@dataclass(frozen=True)
class Candidate:
    """A response as the formats see it."""

    text: str
    model: str
    index: int | None  # into record.responses; None for a text an annotator wrote
    score: float | None  # higher is better
    acceptable: bool | None  # a clear yes/no on quality, when the answers give one
    rank: float | None = None  # lower is better: people's mean rank, or a pairwise verdict's


def better(a: Candidate, b: Candidate) -> bool:
    """Whether `a`, listed above `b`, is really better (not merely listed first).

    Different scores decide; else different ranks (people's ranking, a pairwise judge's
    winner); equal scores without a rank between them are a tie. Unscored and unranked, a
    text an annotator wrote beats a response, and a good one beats one that is not.
    """
    if a.score is not None and b.score is not None and a.score != b.score:
        return a.score > b.score
    if a.rank is not None and b.rank is not None and a.rank != b.rank:
        return a.rank < b.rank
    if a.score is not None and b.score is not None:
        return False
    return a.index is None or (a.acceptable is True and b.acceptable is not True)


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
    curated: dict[str, str] = field(default_factory=dict)  # part → final text (curation)
    changed: tuple[str, ...] = ()  # curation: the parts whose final text differs
    disagreement: tuple[str, ...] = ()  # the questions annotators disagreed on
    candidates: tuple[Candidate, ...] = ()  # best first
    # Per question, each submitting annotator's value (for agreement statistics).
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def excluded(self) -> bool:
        """All responses discarded (or none submitted): no training rows from this record."""
        return not self.auto_accepted and self.submitted == 0

    @property
    def _curated_prompt(self) -> bool:
        return CuratedPart.instruction in self.curated

    @property
    def instruction(self) -> str:
        return self.curated.get(CuratedPart.instruction) or self.record.instruction or ""

    @property
    def context(self) -> str:
        if self._curated_prompt:  # the final context, possibly empty
            return self.curated.get(CuratedPart.context, "")
        return self.record.context or ""

    def prompt_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (a conversation record keeps its turns)."""
        if self.record.messages and not self._curated_prompt:
            return [{"role": m.role.value, "content": m.content} for m in self.record.messages]
        text = self.instruction
        if self.context:
            text = f"{text}\n\n{self.context}"
        return [{"role": "user", "content": text}]

    def prompt_text(self) -> str:
        """The prompt as one string (a conversation as a transcript)."""
        if self.record.messages and not self._curated_prompt:
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


@dataclass
class _Combined:
    """Each question's answers, combined by its kind (see the module's rules)."""

    labels: dict[str, str] = field(default_factory=dict)
    ratings: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, median)
    orders: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # rankings given
    multi: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    disagreement: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, question: str, spec: QuestionSpec | None, given: list[AnnotatorResponse]) -> None:
        kind = spec.kind if spec is not None else _guess_kind(given, question)
        # Each answer once, normalised: a label or text as str, a rating as float, a ranking
        # as a tuple best first, a multi-label choice as a sorted tuple.
        values = [_normalised(r.values[question], kind) for r in given]
        self.answers[question] = {r.annotator: v for r, v in zip(given, values, strict=True)}
        unanimous = len(set(values)) == 1
        if kind == "label":
            self.labels[question] = _majority(values, spec.labels if spec is not None else ())
        elif kind == "rating":
            self.ratings[question] = (fmean(values), float(median(values)))
            unanimous = max(values) - min(values) < RATING_SPREAD
        elif kind == "ranking":
            self.orders[question] = values
            unanimous = len({order[0] for order in values if order}) <= 1
        elif kind == "multi_label":
            options = sorted(set().union(*values))
            chosen = [o for o in options if sum(o in c for c in values) * 2 > len(values)]
            self.multi[question] = chosen
        else:
            self.texts[question] = _latest_common_text(list(zip(values, given, strict=True)))
        if not unanimous:
            self.disagreement.append(question)


def aggregate_completed(event: CompletedRecord, questions: Questions) -> Aggregate:
    """Aggregate the annotators' responses to one record."""
    record = event.record
    submitted = [r for r in event.responses if r.status == ResponseStatus.submitted]
    combined = _Combined()
    for question in sorted({q for r in submitted for q in r.values}):
        given = [r for r in submitted if r.values.get(question) is not None]
        if given:
            combined.add(question, questions.specs.get(question), given)

    shown = _shown(questions, record)
    ranks = _mean_ranks(questions, combined, shown)
    ranking = tuple(sorted(ranks, key=lambda i: (ranks[i], i)))  # ties: lower index first
    curated = {
        spec.field: combined.texts[name]
        for name, spec in questions.specs.items()
        if spec.role == QuestionRole.curated and spec.field and name in combined.texts
    }
    changed: tuple[str, ...] = ()
    if curated:
        originals = questions.originals(record)
        changed = tuple(
            sorted(
                part
                for part, text in curated.items()
                if text.strip() != originals.get(part, "").strip()
            )
        )
    return Aggregate(
        record=record,
        auto_accepted=False,
        dataset=event.dataset,
        submitted=len(submitted),
        discarded=sum(r.status == ResponseStatus.discarded for r in event.responses),
        drafts=sum(r.status == ResponseStatus.draft for r in event.responses),
        annotators=tuple(sorted({r.annotator for r in submitted})),
        labels=combined.labels,
        ratings=combined.ratings,
        ranking=ranking,
        multi_labels=combined.multi,
        texts=combined.texts,
        curated=curated,
        changed=changed,
        disagreement=tuple(combined.disagreement),
        answers=combined.answers,
        candidates=_human_candidates(record, questions, combined, shown, ranks),
    )


def _shown(questions: Questions, record: Record) -> list[int | None]:
    """Per shown position, the record's response index (None where the template names a
    response the record does not have)."""
    n = len(record.responses)
    return [i if 0 <= i < n else None for i in questions.shown(record)]


def _response_at(position: int | None, shown: Sequence[int | None]) -> int | None:
    """The record's response index of "response `position`" of a spec, if shown."""
    return shown[position] if position is not None and position < len(shown) else None


def responses_asked_about(questions: Questions, record: Record) -> dict[str, int]:
    """Per question about one response (`QuestionSpec.response`), the record's index of it."""
    shown = _shown(questions, record)
    asked = {name: _response_at(spec.response, shown) for name, spec in questions.specs.items()}
    return {name: index for name, index in asked.items() if index is not None}


def _mean_ranks(
    questions: Questions, combined: _Combined, shown: Sequence[int | None]
) -> dict[int, float]:
    """Per ranked response index, its mean rank (0: first) over the rankings given."""
    ranks: dict[int, list[int]] = {}
    for question, orders in combined.orders.items():
        spec = questions.specs.get(question)
        if spec is None or spec.role != QuestionRole.ranking:
            continue
        position = {value: i for i, value in enumerate(spec.labels)}
        for order in orders:
            for rank, value in enumerate(order):
                index = _response_at(position.get(value), shown)
                if index is not None:
                    ranks.setdefault(index, []).append(rank)
    return {index: fmean(given) for index, given in ranks.items()}


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


def _acceptable(mean: float, scale: Sequence[int]) -> bool | None:
    share = (mean - scale[0]) / (scale[-1] - scale[0])
    return True if share >= GOOD_SHARE else False if share <= BAD_SHARE else None


def criteria_acceptable(met: float, total: int | None) -> bool | None:
    """Good when every one of `total` criteria is met, bad when a quarter or fewer are."""
    if not total:
        return None
    return True if met >= total else False if met <= total * BAD_SHARE else None


def _written(questions: Questions, texts: Mapping[str, str]) -> str | None:
    """The first non-empty response an annotator wrote, corrected or curated."""
    for name, spec in questions.specs.items():
        writes = spec.role == QuestionRole.written_response or (
            spec.role == QuestionRole.curated and spec.field == CuratedPart.response
        )
        if writes and texts.get(name, "").strip():
            return texts[name]
    return None


def _human_candidates(
    record: Record,
    questions: Questions,
    combined: _Combined,
    shown: Sequence[int | None],
    ranks: Mapping[int, float],
) -> tuple[Candidate, ...]:
    """The record's responses scored by the annotators' answers, plus any text they wrote."""
    n = len(record.responses)
    scores: list[float | None] = [None] * n
    acceptable: list[bool | None] = [None] * n
    for name, spec in questions.specs.items():
        index = _response_at(spec.response, shown)
        if index is None:
            continue
        if spec.role == QuestionRole.rating and name in combined.ratings:
            mean = combined.ratings[name][0]
            scores[index], acceptable[index] = mean, _acceptable(mean, spec.scale)
        elif spec.role == QuestionRole.criteria and name in combined.multi:
            met = [label for label in combined.multi[name] if label != spec.none_label]
            total = sum(label != spec.none_label for label in spec.labels)
            scores[index], acceptable[index] = float(len(met)), criteria_acceptable(len(met), total)
        elif spec.role == QuestionRole.verdict and name in combined.labels:
            good = combined.labels[name] in spec.good
            scores[index], acceptable[index] = (1.0 if good else 0.0), good
    if ranks:
        ranking = sorted(ranks, key=lambda i: (ranks[i], i))
        order = ranking + [i for i in range(n) if i not in ranks]
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
            rank=ranks.get(i),
        )
        for i in order
    ]
    written = _written(questions, combined.texts)
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


def aggregate_judged(record: Record, criteria: int | None = None) -> Aggregate:
    """A record accepted without people: on its judge's verdict, or as it is (no judge).

    `criteria`: how many criteria a checklist judge (`additive`) checks, for good/bad labels.
    """
    verdict = judge_verdict(record)
    n = len(record.responses)
    scores: tuple[float | None, ...] = verdict.scores if verdict else tuple(None for _ in range(n))
    order = list(verdict.order) if verdict and verdict.order else list(range(n))
    # A pairwise verdict scores nothing: its winner ranks first; a tie ranks all alike.
    compared = verdict is not None and all(s is None for s in verdict.scores)
    candidates = []
    for position, i in enumerate(order):
        score = scores[i]
        acceptable = None
        if verdict is not None and score is not None:
            if verdict.five_point:
                acceptable = True if score >= 4 else False if score <= 2 else None
            else:
                acceptable = criteria_acceptable(score, criteria)
        rank = float(min(position, 1) if verdict and verdict.order else 0) if compared else None
        response = record.responses[i]
        candidates.append(
            Candidate(response.text, response.model or response.source, i, score, acceptable, rank)
        )
    ranking = tuple(order) if verdict is not None and verdict.order else ()
    return Aggregate(
        record=record, auto_accepted=True, ranking=ranking, candidates=tuple(candidates)
    )
