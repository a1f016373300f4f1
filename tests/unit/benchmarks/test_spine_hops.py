"""The spine benchmark's arithmetic: each record's hops, their percentiles, records/s."""

from __future__ import annotations

import math

import pytest

from tests.unit.benchmarks.bench_modules import load

hops = load("spine/hops.py")


def test_a_trip_splits_into_its_hops() -> None:
    trip = hops.Trip(
        handed=10.0, accepted=10.2, ingested=10.1, generated=10.5, judged=11.0, done=12.0
    )
    assert trip.hops() == pytest.approx(
        {"ingest": 0.2, "generate": 0.4, "judge": 0.5, "export": 1.0}
    )


def test_trips_keep_only_records_with_every_time() -> None:
    handed = {"a": (0.0, 0.1), "b": (0.0, 0.1), "c": (0.0, 0.1)}
    on_topics = ({"a": 0.05, "b": 0.05, "c": 0.05}, {"a": 0.2, "b": 0.2}, {"a": 0.3, "b": 0.3})
    done = {"a": 1.0, "c": 1.0}
    assert set(hops.trips(handed, on_topics, done)) == {"a"}


def test_hop_figures_are_nearest_rank_percentiles_in_ms() -> None:
    records = {
        str(k): hops.Trip(
            handed=0.0,
            accepted=0.001 * k,  # ingest: 1 .. 100 ms
            ingested=0.0,
            generated=0.002,  # generate: 2 ms for all
            judged=0.002,
            done=1.0,
        )
        for k in range(1, 101)
    }
    figures = hops.hop_figures(records)
    assert figures["ingest"].p50_ms == pytest.approx(50)
    assert figures["ingest"].p99_ms == pytest.approx(99)
    assert figures["generate"].p50_ms == pytest.approx(2)
    assert figures["judge"].p99_ms == pytest.approx(0)
    assert figures["export"].p50_ms == pytest.approx(998)
    assert figures["total"].p99_ms == pytest.approx(1000)


def test_records_per_s_runs_from_the_first_handed_to_the_last_done() -> None:
    records = {
        "a": hops.Trip(5.0, 5.1, 5.1, 5.2, 5.3, 6.0),
        "b": hops.Trip(6.0, 6.1, 6.1, 6.2, 6.3, 9.0),
    }
    assert hops.records_per_s(records) == pytest.approx(2 / 4)
    assert math.isnan(hops.records_per_s({}))
