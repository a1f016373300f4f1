"""The scale benchmark's arithmetic: percentiles, rates, and when a rebalance settled."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from shared.settings import KafkaSettings
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
    result = figures.settling(stamps, added=20.0, scale_up=2.0)
    assert result.before == pytest.approx(10.0, rel=0.05)
    assert result.expected == pytest.approx(20.0, rel=0.05)
    assert result.peak == pytest.approx(20.0, rel=0.05)
    assert result.longest_gap == pytest.approx(3.1, abs=0.05)  # 22.9 -> 26.0
    assert result.gap_at == pytest.approx(22.9, abs=0.01)
    # The first 2 s window at 90% of 20 records/s (36 records) starts a little before 26 s.
    assert result.settled_at is not None
    assert 25.5 <= result.settled_at <= 26.0


def test_settling_without_a_change_settles_at_once() -> None:
    stamps = evenly(0, 60, 10)
    result = figures.settling(stamps, added=20.0, scale_up=1.0)
    assert result.settled_at == pytest.approx(20.0)
    assert result.longest_gap == pytest.approx(0.1, abs=0.01)


def test_settling_that_never_reaches_the_scaled_rate_says_so() -> None:
    # A second replica is added but the group only goes from 10 to 15 records/s: never 90% of
    # the 20 it should reach.
    stamps = evenly(0, 20, 10) + evenly(20, 60, 15)
    result = figures.settling(stamps, added=20.0, scale_up=2.0)
    assert result.settled_at is None
    assert result.peak == pytest.approx(15.0, rel=0.05)


def test_settling_with_nothing_judged_after_the_launch() -> None:
    result = figures.settling(evenly(0, 20, 10), added=30.0, scale_up=2.0)
    assert result.settled_at is None
    assert math.isnan(result.peak)


def test_records_left_per_partition_at_a_time() -> None:
    topics = load("scale/topics.py")
    watcher = topics.JudgedWatcher(KafkaSettings())
    watcher.judged = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 1.5}
    watcher.partition = {"a": 0, "b": 0, "c": 1, "d": 1}
    written = Counter({0: 5, 1: 4, 2: 3})
    assert watcher.left_at(2.0, written) == {0: 3, 1: 3, 2: 3}
    assert watcher.left_at(0.5, written) == {0: 5, 1: 4, 2: 3}
