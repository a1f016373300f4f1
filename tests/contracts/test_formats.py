"""The format contract (`services.exporter.formats.base.Format`), over every installed format.

A third-party format is checked too once installed: it is built from `{}` and from each
option set `VARIANTS` lists for it. It is fed sample aggregates (people's ratings and
rankings, a correction, an auto-accepted judged record, an excluded one) on both the train and
the test side: every row must fit the features of its split, each split must get rows, and an
excluded record gives none.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.sample_records import completed, preference, record, response
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.exporter.aggregate import Aggregate, Questions, aggregate_completed, aggregate_judged
from services.exporter.formats.base import Format, Row
from services.exporter.stats import CurationStats
from services.exporter.versions import rows_table
from shared.events import ResponseStatus
from shared.plugins import PluginKind, PluginRegistry
from tests.contracts.common import installed

KIND = PluginKind.formats
FORMATS = installed(KIND)

# Option sets to check besides `{}` (which every format must accept).
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "sft": [{"style": "prompt-completion"}],
    "dpo": [{"conversational": True}],
    "reward": [{"conversational": True}],
    "kto": [{"conversational": True}],
}
CASES = [
    pytest.param(name, options, id=f"{name}{options or ''}")
    for name in FORMATS
    for options in [{}, *VARIANTS.get(name, [])]
]
SPLIT_OF = ("train", "test")


def build(name: str, options: dict[str, Any]) -> Format:
    fmt = PluginRegistry().build(KIND, name, options)
    assert isinstance(fmt, Format)
    return fmt


def annotated() -> list[Aggregate]:
    """Records people answered with the preference template, a few ways."""
    questions = Questions.of(PreferenceTemplate())
    conversation = record(
        instruction=None,
        messages=[{"role": "user", "content": "Hi"}, {"role": "user", "content": "Sort [2, 1]"}],
    )
    answers = [
        (record(), [preference(5, 1, best=1), preference(4, 2, best=1)]),
        (record(context="Python 3"), [preference(2, 4, best=2, corrected="sorted(xs)")]),
        (conversation, [preference(1, 5, best=2)]),
        (record(instruction="Tie?"), [preference(3, 3, best=1)]),
    ]
    return [
        aggregate_completed(
            completed(rec, *(response(rec, f"ann{k}", v) for k, v in enumerate(given))),
            questions,
        )
        for rec, given in answers
    ]


def excluded() -> Aggregate:
    rec = record(instruction="Everyone discarded this.")
    discarded = [response(rec, f"ann{k}", {}, status=ResponseStatus.discarded) for k in (1, 2)]
    agg = aggregate_completed(completed(rec, *discarded), Questions.of(PreferenceTemplate()))
    assert agg.excluded
    return agg


def samples() -> list[Aggregate]:
    return [*annotated(), aggregate_judged(record(judge_scores=(2.0, 5.0)))]


def all_rows(fmt: Format) -> dict[str, list[Row]]:
    """Every row the format makes of the samples, per split, on either side of the split."""
    out: dict[str, list[Row]] = {split: [] for split in fmt.splits}
    stats = CurationStats(Questions.of(PreferenceTemplate()).kinds)
    for agg in samples():
        stats.add(agg, "2026-01-01T00:00:00+00:00")
        for split_of in SPLIT_OF:
            for split, row in fmt.rows(agg, split_of):
                assert split in out, f"{fmt.name}: row for unknown split {split!r}"
                out[split].append(row)
    for split, row in fmt.summary_rows(stats):
        assert split in out, f"{fmt.name}: summary row for unknown split {split!r}"
        out[split].append(row)
    return out


@pytest.mark.parametrize("name", FORMATS)
def test_names_itself(name: str) -> None:
    factory = PluginRegistry().load(KIND, name)
    assert factory.name == name


@pytest.mark.parametrize(("name", "options"), CASES)
def test_every_split_gets_rows_that_fit_its_features(name: str, options: dict[str, Any]) -> None:
    fmt = build(name, options)
    assert fmt.splits and all(isinstance(split, str) for split in fmt.splits)
    for split, rows in all_rows(fmt).items():
        assert rows, f"{name}: no sample gave a row in split {split!r}"
        features = fmt.features(split)
        for row in rows:
            assert set(row) == set(features), f"{name}/{split}: columns differ from features"
        table = rows_table(rows, features)  # what an export writes: types must fit too
        assert table.num_rows == len(rows) and table.to_pylist() == rows


@pytest.mark.parametrize(("name", "options"), CASES)
def test_training_rows_follow_the_record_split(name: str, options: dict[str, Any]) -> None:
    fmt = build(name, options)
    if set(fmt.splits) != set(SPLIT_OF):
        pytest.skip(f"{name} does not split into train and test")
    for agg in samples():
        for split_of in SPLIT_OF:
            assert all(split == split_of for split, _ in fmt.rows(agg, split_of))


@pytest.mark.parametrize(("name", "options"), CASES)
def test_an_excluded_record_gives_no_rows(name: str, options: dict[str, Any]) -> None:
    fmt = build(name, options)
    assert [row for split_of in SPLIT_OF for row in fmt.rows(excluded(), split_of)] == []


@pytest.mark.parametrize(("name", "options"), CASES)
def test_rows_keep_no_state_between_records(name: str, options: dict[str, Any]) -> None:
    fmt = build(name, options)
    aggregates = samples()
    first = [list(fmt.rows(agg, "train")) for agg in aggregates]
    again = [list(fmt.rows(agg, "train")) for agg in reversed(aggregates)]
    assert first == again[::-1]
