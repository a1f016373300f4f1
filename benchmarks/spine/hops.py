"""The spine benchmark's arithmetic (unit-tested): each record's times at every hop, the
latency of each hop, records/s end to end.

A record's `Trip` (epoch seconds, one clock: the benchmark's and the producers' on one
machine): handed over (the ingest request, or the anchor's send call), accepted (the request's
answer, or the send's acknowledgement: the record is on the first topic), on each later topic
(the message's own timestamp, set by the process that wrote it), done (in an exported version,
or consumed by the anchor's sink).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "scale"))
from figures import percentile

HOPS = ("ingest", "generate", "judge", "export")


@dataclass(frozen=True)
class Trip:
    handed: float
    accepted: float
    ingested: float  # on the first topic (records.ingested)
    generated: float  # on the second (records.generated)
    judged: float  # on the third (records.judged)
    done: float

    def hops(self) -> dict[str, float]:
        """Seconds spent at each hop: the ingest (handed to accepted), then from one topic to
        the next, and from the last topic to done."""
        return {
            "ingest": self.accepted - self.handed,
            "generate": self.generated - self.ingested,
            "judge": self.judged - self.generated,
            "export": self.done - self.judged,
        }


def trips(
    handed: Mapping[str, tuple[float, float]],
    on_topics: tuple[Mapping[str, float], Mapping[str, float], Mapping[str, float]],
    done: Mapping[str, float],
) -> dict[str, Trip]:
    """Each record's trip, for the records with every time known (the others are missing)."""
    ingested, generated, judged = on_topics
    return {
        key: Trip(sent, answered, ingested[key], generated[key], judged[key], done[key])
        for key, (sent, answered) in handed.items()
        if key in ingested and key in generated and key in judged and key in done
    }


@dataclass(frozen=True)
class HopFigures:
    p50_ms: float
    p99_ms: float


def hop_figures(records: Mapping[str, Trip]) -> dict[str, HopFigures]:
    """p50 and p99 of each hop, and of the whole trip (`total`), in milliseconds."""
    by_hop: dict[str, list[float]] = {hop: [] for hop in (*HOPS, "total")}
    for trip in records.values():
        for hop, seconds in trip.hops().items():
            by_hop[hop].append(seconds * 1000)
        by_hop["total"].append((trip.done - trip.handed) * 1000)
    return {
        hop: HopFigures(percentile(values, 50), percentile(values, 99))
        for hop, values in by_hop.items()
    }


def records_per_s(records: Mapping[str, Trip]) -> float:
    """Records from the first handed over to the last done, per second."""
    if not records:
        return math.nan
    first = min(t.handed for t in records.values())
    last = max(t.done for t in records.values())
    return len(records) / (last - first) if last > first else math.nan
