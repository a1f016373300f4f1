from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from itertools import combinations, permutations
from typing import Any

import pytest

from services.exporter.agreement import (
    LEVELS,
    Agreement,
    Level,
    cohens_kappa,
    krippendorff_alpha,
    percent_agreement,
    question_agreement,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, missing values (None). Published: nominal .743, ordinal .815, interval .849.
OBSERVERS: dict[str, list[int | None]] = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}
UNITS: list[list[int | None]] = [list(unit) for unit in zip(*OBSERVERS.values(), strict=True)]
PUBLISHED: dict[Level, float] = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}

# Same paper, section A: binary data, two observers, no missing values: alpha = .095.
BINARY = list(zip([0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0], strict=True))
# Same paper, section B: nominal data, two observers, no missing values: alpha = .692.
NOMINAL = list(zip("aabbdcccedda", "babbbccceddd", strict=True))


def table(both_yes: int, first_only: int, second_only: int, both_no: int) -> list[tuple[str, str]]:
    """Pairs (annotator 1, annotator 2) from a 2x2 yes/no contingency table."""
    return (
        [("yes", "yes")] * both_yes
        + [("yes", "no")] * first_only
        + [("no", "yes")] * second_only
        + [("no", "no")] * both_no
    )


# A second, naive implementation: sums delta over every ordered pair of values, exactly.

Delta = Callable[[Any, Any], Fraction]


def naive_delta(level: Level, values: list[Any]) -> Delta:
    if level == "nominal":
        return lambda c, k: Fraction(int(c != k))
    if level == "interval":
        return lambda c, k: Fraction(c - k) ** 2

    def ordinal(c: Any, k: Any) -> Fraction:
        low, high = min(c, k), max(c, k)
        between = sum(values.count(g) for g in set(values) if low <= g <= high)
        return (between - Fraction(values.count(c) + values.count(k), 2)) ** 2

    return ordinal


def naive_alpha(units: Sequence[Sequence[Any]], level: Level) -> Fraction | None:
    pairable = [[v for v in unit if v is not None] for unit in units]
    pairable = [unit for unit in pairable if len(unit) >= 2]
    values = [value for unit in pairable for value in unit]
    if not pairable:
        return None
    delta = naive_delta(level, values)
    n = len(values)
    observed = (
        sum(
            (
                sum((delta(a, b) for a, b in permutations(unit, 2)), Fraction(0)) / (len(unit) - 1)
                for unit in pairable
            ),
            Fraction(0),
        )
        / n
    )
    expected = sum((delta(a, b) for a, b in permutations(values, 2)), Fraction(0)) / (n * (n - 1))
    return None if expected == 0 else 1 - observed / expected


def naive_percent(units: Sequence[Sequence[Any]]) -> float | None:
    pairs = [
        a == b for unit in units for a, b in combinations([v for v in unit if v is not None], 2)
    ]
    return sum(pairs) / len(pairs) if pairs else None


# Krippendorff's alpha


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_matches_published_example_with_missing_data(level: Level) -> None:
    alpha = krippendorff_alpha(UNITS, level)
    expected = naive_alpha(UNITS, level)
    assert alpha is not None and expected is not None
    assert alpha == pytest.approx(float(expected), abs=1e-12)
    assert round(alpha, 3) == PUBLISHED[level]


def test_alpha_published_two_observer_examples() -> None:
    binary = krippendorff_alpha(BINARY)
    assert binary == pytest.approx(1 - 19 * 8 / 168)  # (n - 1) * 2 * o_01 / (2 * n_0 * n_1)
    assert binary is not None and round(binary, 3) == 0.095
    nominal = krippendorff_alpha(NOMINAL)
    assert nominal == pytest.approx(1 - 23 * 6 / 448)
    assert nominal is not None and round(nominal, 3) == 0.692


def test_alpha_levels_differ_and_default_is_nominal() -> None:
    assert krippendorff_alpha(UNITS) == krippendorff_alpha(UNITS, "nominal")
    alphas = {level: krippendorff_alpha(UNITS, level) for level in LEVELS}
    assert len(set(alphas.values())) == 3


def test_ordinal_alpha_depends_only_on_the_order_of_values() -> None:
    def cube(units: list[list[int | None]]) -> list[list[int | None]]:
        return [[None if v is None else v**3 for v in unit] for unit in units]

    assert krippendorff_alpha(cube(UNITS), "ordinal") == pytest.approx(
        krippendorff_alpha(UNITS, "ordinal")
    )
    assert krippendorff_alpha(cube(UNITS), "interval") != pytest.approx(
        krippendorff_alpha(UNITS, "interval")
    )


def test_interval_alpha_is_invariant_under_affine_rescaling() -> None:
    rescaled = [[None if v is None else 10 * v - 7 for v in unit] for unit in UNITS]
    assert krippendorff_alpha(rescaled, "interval") == pytest.approx(
        krippendorff_alpha(UNITS, "interval")
    )


def test_alpha_perfect_and_systematic_disagreement() -> None:
    assert krippendorff_alpha([["a", "a"], ["b", "b"], ["c", "c", "c"]]) == 1.0
    # Every unit disagrees: D_o = 4 / 4, D_e = 2 * 2 * 2 / (4 * 3), alpha = 1 - 3 / 2.
    units = [["a", "b"], ["b", "a"]]
    assert krippendorff_alpha(units) == pytest.approx(-0.5)
    assert krippendorff_alpha(units) == pytest.approx(float(naive_alpha(units, "nominal") or 0))


def test_alpha_accepts_tuples_such_as_rankings() -> None:
    units: list[list[tuple[int, ...] | None]] = [
        [(1, 2, 3), (1, 2, 3)],
        [(3, 2, 1), (1, 2, 3)],
        [(2, 1, 3), (2, 1, 3), None],
    ]
    expected = naive_alpha(units, "nominal")
    assert expected is not None
    assert krippendorff_alpha(units) == pytest.approx(float(expected))


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([]) is None
    assert krippendorff_alpha([[1], [2], [None, 3], []]) is None  # nothing pairable
    for level in LEVELS:
        assert krippendorff_alpha([[2, 2], [2, 2, 2]], level) is None  # no variation at all
    # Unpairable units do not count towards the expected disagreement either.
    assert krippendorff_alpha([[1, 1], [2, 2], [3]]) == krippendorff_alpha([[1, 1], [2, 2]])


def test_alpha_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        krippendorff_alpha(UNITS, "ratio")  # type: ignore[arg-type]


# Percent agreement


def test_percent_agreement_hand_computed() -> None:
    assert percent_agreement([[1, 1], [1, 2]]) == 0.5
    # Pairs are pooled: 1 of 3 pairs + 1 of 1 pair = 2 / 4 (a per-unit mean would give 2/3).
    assert percent_agreement([["a", "a", "b"], ["x", "x"], ["solo"]]) == 0.5
    assert percent_agreement([[1, None, 1], [None]]) == 1.0
    assert percent_agreement([[1, 2, 3]]) == 0.0


def test_percent_agreement_on_published_data() -> None:
    assert percent_agreement(UNITS) == pytest.approx(naive_percent(UNITS))
    # Pairs per unit: 3, 6 x 8, 3, 1 = 55 (unit 12 has one value); agreeing:
    # 3 + 3 + 6 + 6 + 6 + 0 + 6 + 3 + 6 + 3 + 1 = 43.
    assert percent_agreement(UNITS) == pytest.approx(43 / 55)


def test_percent_agreement_edge_cases() -> None:
    assert percent_agreement([]) is None
    assert percent_agreement([[1], [None, 2], []]) is None


# Cohen's kappa


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ((20, 5, 10, 15), 0.4),  # Wikipedia, "Cohen's kappa", simple example
        ((45, 15, 25, 15), 0.06 / 0.46),  # Wikipedia, same agreement, kappa 0.1304
        ((25, 35, 5, 35), 0.14 / 0.54),  # Wikipedia, same agreement, kappa 0.2593
    ],
)
def test_kappa_textbook_tables(cells: tuple[int, int, int, int], expected: float) -> None:
    assert cohens_kappa(table(*cells)) == pytest.approx(expected)


def test_kappa_multiple_labels_hand_computed() -> None:
    # p_o = 9/12, p_e = (3*1 + 2*4 + 3*3 + 3*3 + 1*1)/144 = 30/144.
    assert cohens_kappa(NOMINAL) == pytest.approx((9 * 12 - 30) / (144 - 30))


def test_kappa_edge_cases() -> None:
    assert cohens_kappa([]) is None
    assert cohens_kappa([("x", "x")] * 3) == 1.0  # p_e == 1
    assert cohens_kappa([("a", "b"), ("b", "a")]) == -1.0
    assert cohens_kappa([(None, "a"), ("b", None)]) is None
    assert cohens_kappa([*table(20, 5, 10, 15), (None, "yes"), ("no", None)]) == pytest.approx(0.4)


# question_agreement


def by_item(observers: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    items = zip(*observers.values(), strict=True)
    return [dict(zip(observers, values, strict=True)) for values in items]


@pytest.mark.parametrize("level", LEVELS)
def test_question_agreement_published_example(level: Level) -> None:
    # Missing answers are given both as None and as absent keys.
    items = [
        {k: v for k, v in item.items() if k != "A" or v is not None} for item in by_item(OBSERVERS)
    ]
    result = question_agreement("q", level, items)
    assert result.question == "q"
    assert result.level == level
    assert result.units == 11
    assert result.annotators == 4
    assert result.alpha is not None and round(result.alpha, 3) == PUBLISHED[level]
    assert result.percent == pytest.approx(43 / 55)
    assert result.kappa is None


def test_question_agreement_two_annotators_kappa_uses_shared_items() -> None:
    pairs = table(20, 5, 10, 15)
    items: list[dict[str, Any]] = [{"ann": a, "bob": b} for a, b in pairs]
    items += [{"ann": "yes"}, {"bob": "no", "ann": None}, {}]
    result = question_agreement("helpful", "nominal", items)
    assert result.units == 50
    assert result.annotators == 2
    assert result.kappa == pytest.approx(0.4)
    assert result.percent == pytest.approx(35 / 50)
    assert result.alpha == pytest.approx(krippendorff_alpha([list(p) for p in pairs]))


def test_question_agreement_all_identical() -> None:
    items = [{"ann": "good", "bob": "good"}] * 5
    assert question_agreement("q", "nominal", items) == Agreement(
        question="q", level="nominal", units=5, annotators=2, percent=1.0, alpha=None, kappa=1.0
    )


@pytest.mark.parametrize(
    ("items", "annotators"),
    [
        ([], 0),
        ([{}, {"ann": None}], 0),
        ([{"ann": 1}, {"ann": 2}, {"ann": 3, "bob": None}], 1),  # one annotator only
    ],
)
def test_question_agreement_without_pairable_items(
    items: list[dict[str, Any]], annotators: int
) -> None:
    result = question_agreement("q", "ordinal", items)
    assert result.units == 0
    assert result.annotators == annotators
    assert (result.percent, result.alpha, result.kappa) == (None, None, None)
