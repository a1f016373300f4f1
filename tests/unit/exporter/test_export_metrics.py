"""The exporter's metrics move as records come in: records kept for export per flow (stage
`exported`), the batch's size, the bad message as a dead letter."""

from __future__ import annotations

from pathlib import Path

from faststream.kafka import TestKafkaBroker

from services.exporter.app import register
from shared.events import RECORDS_COMPLETED
from tests.support.metrics import value
from tests.unit.exporter.service_helpers import Outputs, close, completed_event, exporter_context

N = 4


def readings() -> dict[str, float]:
    return {
        "exported": value(
            "loopline_records_total", service="exporter", flow="support", stage="exported"
        ),
        "batched": value("loopline_batch_size_sum", service="exporter", topic=RECORDS_COMPLETED),
        "dead": value(
            "loopline_dead_letters_total",
            service="exporter",
            topic=RECORDS_COMPLETED,
            error_type="ValidationError",
        ),
    }


async def test_records_kept_for_export_are_counted(tmp_path: Path) -> None:
    ctx = exporter_context(tmp_path, every_records=N)
    out = Outputs(ctx.broker)
    register(ctx)
    bodies = [body for _, body in (completed_event(i) for i in range(N))]
    before = readings()
    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(*bodies, b"not json", topic=RECORDS_COMPLETED)
        await out.next_announcement()
        await close(ctx)
    after = readings()
    assert {name: after[name] - before[name] for name in before} == {
        "exported": N,
        "batched": N + 1,
        "dead": 1,
    }
