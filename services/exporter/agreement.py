"""Inter-annotator agreement for one annotation question.

A *unit* is the list of values that the annotators gave to one item. ``None`` values are
ignored everywhere, so a unit is pairable only when it holds two or more values. Values must be
hashable (labels, numbers, tuples such as a ranking turned into a tuple) and are compared
with ``==``.

Definitions
-----------
percent agreement
    Pairwise agreement, pooled over units: over every unit with two or more values, the
    number of agreeing pairs of values divided by the number of pairs of values. A unit with
    ``m`` values contributes ``m * (m - 1) / 2`` pairs.

Cohen's kappa
    Two annotators, nominal labels, one ``(label 1, label 2)`` pair per item:
    ``kappa = (p_o - p_e) / (1 - p_e)`` where ``p_o`` is the share of items with equal labels
    and ``p_e = sum_c p_1(c) * p_2(c)`` the agreement expected from each annotator's own label
    frequencies. It is computed from integer counts, so ``p_e == 1`` is detected exactly.

Krippendorff's alpha
    Through the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): each pairable unit ``u`` with ``m_u`` values adds, for every ordered
    pair of its values taken from two different annotators, ``1 / (m_u - 1)`` to ``o[c, k]``.
    ``n_c`` is how often value ``c`` occurs in pairable units and ``n = sum_c n_c``. Then
    ``D_o = sum_{c,k} o[c, k] * delta(c, k) / n``,
    ``D_e = sum_{c,k} n_c * n_k * delta(c, k) / (n * (n - 1))`` and
    ``alpha = 1 - D_o / D_e``. The difference function ``delta`` depends on the level:

    * nominal: ``0`` if ``c == k`` else ``1``;
    * interval: ``(c - k) ** 2`` (values must be numbers);
    * ordinal: ``(sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2`` where ``g`` runs over the values
      used, ordered by value, from ``c`` to ``k`` inclusive (values must be mutually orderable).

Edge-case rules
---------------
* ``percent_agreement`` is ``None`` when no unit has two or more values.
* ``cohens_kappa`` is ``None`` when there are no complete pairs. When ``p_e == 1`` (both
  annotators always used one and the same label) it is ``1.0`` if ``p_o == 1`` (which then
  always holds) and ``None`` otherwise.
* ``krippendorff_alpha`` is ``None`` when there is no pairable unit, and also when
  ``D_e == 0``: a single value used throughout shows no variation, so reliability is
  undefined (``0 / 0``), even though every annotator agreed. Percent agreement and kappa
  report that case as ``1.0``.
* ``Agreement.kappa`` is ``None`` unless exactly two annotators gave non-``None`` values.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal, get_args

Level = Literal["nominal", "ordinal", "interval"]
LEVELS: tuple[Level, ...] = get_args(Level)

Delta = Callable[[Any, Any], float]


def _pairable(units: Sequence[Sequence[Any]]) -> list[Counter[Hashable]]:
    """Value counts of every unit with two or more non-``None`` values."""
    counted = (Counter(value for value in unit if value is not None) for unit in units)
    return [counts for counts in counted if counts.total() >= 2]


def percent_agreement(units: Sequence[Sequence[Any]]) -> float | None:
    """Share of agreeing pairs of values among all pairs, pooled over pairable units."""
    agreeing = pairs = 0
    for counts in _pairable(units):
        m = counts.total()
        pairs += m * (m - 1) // 2
        agreeing += sum(count * (count - 1) // 2 for count in counts.values())
    return agreeing / pairs if pairs else None


def cohens_kappa(pairs: Sequence[tuple[Any, Any]]) -> float | None:
    """Cohen's kappa for two annotators; pairs with a ``None`` label are ignored."""
    return _kappa(
        Counter(
            (first, second) for first, second in pairs if first is not None and second is not None
        )
    )


def _kappa(joint: Counter[tuple[Any, Any]]) -> float | None:
    """Cohen's kappa from how often each (label 1, label 2) pair occurred."""
    total = joint.total()
    if not total:
        return None
    agreeing = sum(count for (first, second), count in joint.items() if first == second)
    first_counts: Counter[Any] = Counter()
    second_counts: Counter[Any] = Counter()
    for (first, second), count in joint.items():
        first_counts[first] += count
        second_counts[second] += count
    # p_o = agreeing / total and p_e = chance / total**2; multiply through by total**2.
    chance = sum(count * second_counts[label] for label, count in first_counts.items())
    if chance == total * total:
        return 1.0 if agreeing == total else None
    return (agreeing * total - chance) / (total * total - chance)


def _ordinal_delta(totals: Counter[Hashable]) -> Delta:
    """Krippendorff's ordinal metric for the marginal frequencies ``totals``."""
    ordered: list[Any] = sorted(totals)
    rank = {value: index for index, value in enumerate(ordered)}
    cumulative = [0, *accumulate(totals[value] for value in ordered)]

    def delta(c: Any, k: Any) -> float:
        low, high = sorted((rank[c], rank[k]))
        between = cumulative[high + 1] - cumulative[low]
        return float((between - (totals[c] + totals[k]) / 2) ** 2)

    return delta


def _delta(level: Level, totals: Counter[Hashable]) -> Delta:
    if level == "nominal":
        return lambda c, k: 0.0 if c == k else 1.0
    if level == "interval":
        return lambda c, k: float((c - k) ** 2)
    if level == "ordinal":
        return _ordinal_delta(totals)
    raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")


def _coincide(
    counts: Counter[Hashable], coincidences: defaultdict[tuple[Hashable, Hashable], float]
) -> None:
    """Add one pairable unit's coincidences (the diagonal is left out: delta(c, c) == 0)."""
    weight = 1 / (counts.total() - 1)
    for c, n_c in counts.items():
        for k, n_k in counts.items():
            if c != k:
                coincidences[c, k] += n_c * n_k * weight


def _alpha(
    coincidences: Mapping[tuple[Hashable, Hashable], float],
    totals: Counter[Hashable],
    level: Level,
) -> float | None:
    delta = _delta(level, totals)
    n = totals.total()
    if n < 2:
        return None
    observed = sum(o * delta(c, k) for (c, k), o in coincidences.items()) / n
    expected = sum(
        n_c * n_k * delta(c, k) for c, n_c in totals.items() for k, n_k in totals.items() if c != k
    ) / (n * (n - 1))
    if expected == 0:
        return None
    return 1 - observed / expected


def krippendorff_alpha(units: Sequence[Sequence[Any]], level: Level = "nominal") -> float | None:
    """Krippendorff's alpha at the given level of measurement, tolerating missing values."""
    _delta(level, Counter())  # an unknown level fails even without data
    totals: Counter[Hashable] = Counter()
    coincidences: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for counts in _pairable(units):
        totals.update(counts)
        _coincide(counts, coincidences)
    return _alpha(coincidences, totals, level)


@dataclass(frozen=True)
class Agreement:
    """Agreement figures for one question."""

    question: str
    level: Level
    units: int  # items with 2+ values
    annotators: int  # distinct annotators who gave at least one value
    percent: float | None
    alpha: float | None
    kappa: float | None  # only when exactly two annotators, else None


class AgreementAccumulator:
    """Agreement for one question, fed one item at a time.

    Items are counted by their pattern of answers (which annotator gave which value), so memory
    is bounded by the number of distinct patterns (annotators x values: small for labels,
    ratings and rankings), never by the number of items, and adding an item is one dictionary
    update. Free-text questions, whose every answer is new, do not belong here.
    """

    def __init__(self, question: str, level: Level) -> None:
        _delta(level, Counter())
        self.question = question
        self.level = level
        self._patterns: Counter[tuple[tuple[str, Any], ...]] = Counter()

    def add(self, item: Mapping[str, Any]) -> None:
        """One item's answers, ``{annotator: value}`` (``None`` counts as no answer)."""
        pattern = sorted(item.items())  # by annotator: values are never compared
        if any(v is None for _, v in pattern):
            pattern = [(w, v) for w, v in pattern if v is not None]
        self._patterns[tuple(pattern)] += 1

    def merge(self, other: AgreementAccumulator) -> None:
        """Add the items `other` has seen."""
        self._patterns.update(other._patterns)

    def result(self) -> Agreement:
        annotators: set[str] = set()
        units = agreeing = pairs = 0
        totals: Counter[Hashable] = Counter()
        coincidences: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
        joint: defaultdict[tuple[str, str], Counter[tuple[Any, Any]]] = defaultdict(Counter)
        for pattern, times in self._patterns.items():
            annotators.update(who for who, _ in pattern)
            for i, (first, a) in enumerate(pattern):
                for second, b in pattern[i + 1 :]:
                    joint[first, second][a, b] += times
            counts: Counter[Hashable] = Counter(value for _, value in pattern)
            m = counts.total()
            if m < 2:
                continue
            units += times
            pairs += times * m * (m - 1) // 2
            agreeing += times * sum(c * (c - 1) // 2 for c in counts.values())
            totals.update({value: c * times for value, c in counts.items()})
            unit: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
            _coincide(counts, unit)
            for pair, weight in unit.items():
                coincidences[pair] += weight * times
        kappa = None
        if len(annotators) == 2:
            first, second = sorted(annotators)
            kappa = _kappa(joint[first, second])
        return Agreement(
            question=self.question,
            level=self.level,
            units=units,
            annotators=len(annotators),
            percent=agreeing / pairs if pairs else None,
            alpha=_alpha(coincidences, totals, self.level) if units else None,
            kappa=kappa,
        )


def question_agreement(
    question: str, level: Level, by_item: Sequence[Mapping[str, Any]]
) -> Agreement:
    """Agreement for one question from ``{annotator: value}`` per item.

    Kappa uses the items that both annotators answered, and only when there are exactly two.
    """
    accumulator = AgreementAccumulator(question, level)
    for item in by_item:
        accumulator.add(item)
    return accumulator.result()
