"""The collector counts the records answered and completed per flow (the flow of a response
from the dataset it was given in)."""

from __future__ import annotations

import pytest

from services.feedback_collector.mapping import WatchedDatasets
from tests.support.metrics import value
from tests.unit.feedback_collector.fakes import (
    FLOWS,
    FakeArgilla,
    FakeBroker,
    Life,
    ago,
    loopline_record,
)

FLOW = "feedback-test"


def readings() -> dict[str, float]:
    return {
        stage: value("loopline_records_total", service="feedback-collector", flow=FLOW, stage=stage)
        for stage in ("answered", "completed")
    }


async def test_answered_and_completed_records_are_counted_per_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    record = argilla.add(dataset, loopline_record("metrics-r1"))
    argilla.respond(record, "ann1", at=ago(30), rating=4)
    before = readings()
    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    await life.reconcile()  # nothing new: nothing counted again
    after = readings()
    assert {stage: after[stage] - before[stage] for stage in before} == {
        "answered": 1,
        "completed": 1,
    }


def test_the_flow_of_a_dataset_and_its_versions() -> None:
    watched = WatchedDatasets.from_flows(FLOWS, "admin")
    assert watched.flow_of("support") == FLOW
    assert watched.flow_of("support-v3") == FLOW
    assert watched.flow_of("elsewhere") == "unknown"
