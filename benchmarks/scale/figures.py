"""The scale benchmark's arithmetic, apart from any process or broker (unit-tested):
throughput, the group's rate in windows, when a rebalance has settled, nearest-rank
percentiles.

Times are seconds on one clock (the benchmark uses the epoch: Kafka's message timestamps).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def rate(stamps: Sequence[float], start: float, end: float) -> float:
    """Events per second among sorted `stamps` that fall in [start, end]."""
    if end <= start:
        return math.nan
    count = bisect.bisect_right(stamps, end) - bisect.bisect_left(stamps, start)
    return count / (end - start)


def throughput(count: int, started: float, last: float) -> float:
    """`count` records from `started` to the `last` one's time, per second."""
    return count / (last - started) if last > started else math.nan


@dataclass(frozen=True)
class Settling:
    """How the group's throughput went after a replica was added at `added`."""

    before: float  # records/s of the group in the `before_s` before the replica started
    expected: float  # records/s the larger group should reach: `before` x the scale-up
    peak: float  # the best `window_s` window's rate after `added`
    settled_at: float | None  # the first window from `added` at `expected` within tolerance
    longest_gap: float  # the longest time between two judged records from `added` on
    gap_at: float  # when that gap began


def settling(
    stamps: Sequence[float],
    added: float,
    scale_up: float,
    window_s: float = 2.0,
    before_s: float = 5.0,
    tolerance: float = 0.1,
    step_s: float = 0.1,
) -> Settling:
    """When the group's rate settled after a replica was added at `added`.

    `stamps`: every record's judged time, sorted. The group should go from its rate in the
    `before_s` before `added` to that times `scale_up` ((N + 1) / N for N replicas). Settled:
    the start of the first `window_s` window, sliding by `step_s` from `added`, whose rate is
    at least (1 - `tolerance`) of that; None if none is (the group never got there).
    """
    before = rate(stamps, added - before_s, added)
    expected = before * scale_up
    later = stamps[bisect.bisect_left(stamps, added) :]
    if not later:
        return Settling(before, expected, math.nan, None, math.nan, added)
    settled_at = None
    peak = 0.0
    start = added
    while start + window_s <= later[-1]:
        now = rate(stamps, start, start + window_s)
        peak = max(peak, now)
        if settled_at is None and now >= (1 - tolerance) * expected:
            settled_at = start
        start += step_s
    gaps = [(b - a, a) for a, b in itertools.pairwise([added, *later])]
    longest, gap_at = max(gaps)
    return Settling(before, expected, peak, settled_at, longest, gap_at)
