"""The scale benchmark's arithmetic: percentiles, rates, and when a rebalance settled."""

from __future__ import annotations

import math

import pytest

from tests.unit.benchmarks.bench_modules import load

figures = load("scale/figures.py")


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1 .. 100
    assert figures.percentile(values, 50) == 50.0
    assert figures.percentile(values, 99) == 99.0
    assert figures.percentile(values, 100) == 100.0
    assert figures.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert figures.percentile([7.0], 1) == 7.0
    assert math.isnan(figures.percentile([], 50))


def test_rate_counts_the_stamps_inside_the_window_ends_included() -> None:
    stamps = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert figures.rate(stamps, 0.0, 2.0) == pytest.approx(5 / 2)
    assert figures.rate(stamps, 2.5, 3.5) == pytest.approx(1.0)
    assert math.isnan(figures.rate(stamps, 1.0, 1.0))


def test_throughput_from_the_start_to_the_last_record() -> None:
    assert figures.throughput(100, 10.0, 30.0) == pytest.approx(5.0)
    assert math.isnan(figures.throughput(100, 10.0, 10.0))


def evenly(start: float, end: float, per_s: float) -> list[float]:
    count = round((end - start) * per_s)
    return [start + k / per_s for k in range(count)]


def test_settling_finds_the_pause_and_the_doubled_rate() -> None:
    # 10 records/s until 20 s; a replica is added at 20 s; nothing is judged from 23 s to 26 s
    # (the group rebalances), then 20 records/s until 60 s.
    stamps = evenly(0, 23, 10) + evenly(26, 60, 20)
    result = figures.settling(stamps, added=20.0)
    assert result.before == pytest.approx(10.0, rel=0.06)
    assert result.after == pytest.approx(20.0, rel=0.03)
    assert result.longest_gap == pytest.approx(3.1, abs=0.05)  # 22.9 -> 26.0
    assert result.gap_at == pytest.approx(22.9, abs=0.01)
    # The first 2 s window at 90% of 20 records/s starts a little before 26 s: its 2 s then
    # hold at least 36 records, all of them after the pause.
    assert result.settled_at is not None
    assert 25.5 <= result.settled_at <= 26.0


def test_settling_without_a_change_settles_at_once() -> None:
    stamps = evenly(0, 60, 10)
    result = figures.settling(stamps, added=20.0)
    assert result.after == pytest.approx(10.0, rel=0.03)
    assert result.settled_at == pytest.approx(20.0)
    assert result.longest_gap == pytest.approx(0.1, abs=0.01)


def test_settling_with_too_few_records_after_the_launch_says_so() -> None:
    stamps = evenly(0, 20, 10)  # the last 5 records after 19.5 s: no settled rate to measure
    result = figures.settling(stamps, added=19.5)
    assert result.settled_at is None
    assert math.isnan(result.after)


def test_settling_that_never_reaches_the_rate_says_so() -> None:
    # After the launch the group crawls (1 record/s) until a burst at the very end: the middle
    # of the records judged after the launch lies in the burst, which no 2 s window before
    # its 95th percentile reaches.
    stamps = evenly(0, 20, 10) + evenly(20, 40, 1) + evenly(40, 40.5, 200)
    result = figures.settling(stamps, added=20.0)
    assert result.after > 100
    assert result.settled_at is None
