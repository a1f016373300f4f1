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

    before: float  # records/s of the group in the `window_s` before the replica started
    after: float  # records/s once settled: the middle of what was judged after it started
    settled_at: float | None  # the first window that reached `after` within the tolerance
    longest_gap: float  # the longest time between two judged records from `added` on
    gap_at: float  # when that gap began


def settling(
    stamps: Sequence[float],
    added: float,
    window_s: float = 2.0,
    tolerance: float = 0.1,
    step_s: float = 0.1,
) -> Settling:
    """When the group's rate settled after a replica was added at `added`.

    `stamps`: every record's judged time, sorted. The settled rate is the group's rate between
    the median and the 95th percentile of the records judged after `added` (late enough for the
    new replica to be working, early enough that no partition has run dry yet). Settled: the
    start of the first `window_s` window, sliding by `step_s` from `added`, whose rate is at
    least (1 - `tolerance`) of that; None if none is.
    """
    before = rate(stamps, added - window_s, added)
    later = stamps[bisect.bisect_left(stamps, added) :]
    if len(later) < 10:
        return Settling(before, math.nan, None, math.nan, added)
    middle, late = later[len(later) // 2], later[(len(later) * 95) // 100]
    after = rate(stamps, middle, late)
    settled_at = None
    start = added
    while start + window_s <= late:
        if rate(stamps, start, start + window_s) >= (1 - tolerance) * after:
            settled_at = start
            break
        start += step_s
    points = [added, *later]
    gaps = [(b - a, a) for a, b in itertools.pairwise(points)]
    longest, gap_at = max(gaps)
    return Settling(before, after, settled_at, longest, gap_at)
