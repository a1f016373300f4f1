"""The ingester counts the records it passes on per flow (`loopline_records_total`, stage
`ingested`): the ones routed into the flow, not the rejected, duplicate or unrouted ones."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.unit.ingester.http_app import ingester


def ingested(flow: str) -> float:
    labels = {"service": "ingester", "flow": flow, "stage": "ingested"}
    return REGISTRY.get_sample_value("loopline_records_total", labels) or 0.0


async def test_routed_records_are_counted_per_flow() -> None:
    async with ingester() as ing:
        flow = ing.pipeline.default_flow
        before = ingested(flow)
        answer = await ing.post(
            [
                {"record_id": "m1", "instruction": "One?"},
                {"record_id": "m2", "instruction": "Two?"},
                {"record_id": "m1", "instruction": "One?"},  # a duplicate
                {"record_id": "m3", "instruction": 3},  # rejected
            ]
        )
    assert answer.status_code == 200, answer.text
    assert ingested(flow) - before == 2
