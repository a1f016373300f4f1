"""The exporter service's time trigger, on FastStream's in-memory test broker.

`every_s` exports a flow that many seconds after its last export, and only when records
changed since: a quiet flow makes no new version however long the service runs.
"""

import asyncio
import time
from pathlib import Path

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.sample_records import completed, preference, record, response
from services.exporter.app import register
from services.exporter.versions import versions
from shared.broker import build_broker
from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, DatasetExported
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import ExportSettings, Settings

EVERY_S = 1.0


def context(export_dir: Path) -> ServiceContext:
    # Worker processes from the first record: the service's exports run in a thread beside the
    # event loop, and the workers must come from the fork server, not from this process.
    export = ExportSettings(dir=export_dir, check_interval_s=0.05, workers=2, parallel_from=0)
    settings = Settings(export=export)
    broker, dead_letters = build_broker(settings, "exporter")
    flows = parse_flows(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {
                        "formats": [{"plugin": "sft"}],
                        "every_records": 0,
                        "every_s": EVERY_S,
                    },
                }
            }
        },
        "test",
    )
    return ServiceContext(
        name="exporter", settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )


def completed_event(i: int) -> bytes:
    rec = record(instruction=f"Question {i}?")
    answers = (response(rec, "ann1", preference(5, 2)), response(rec, "ann2", preference(4, 1)))
    return completed(rec, *answers).to_bytes()


async def test_time_trigger_exports_changed_records_once_every_s(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    announced: asyncio.Queue[DatasetExported] = asyncio.Queue()

    @ctx.broker.subscriber(DATASETS_EXPORTED, group_id="reader")
    async def read(message: KafkaMessage) -> None:
        announced.put_nowait(DatasetExported.model_validate_json(message.body))

    sft = tmp_path / "support" / "sft"
    started = time.monotonic()
    register(ctx)  # subscribes, and starts the timer
    async with TestKafkaBroker(ctx.broker) as broker:
        for i in range(3):
            await broker.publish(completed_event(i), topic=RECORDS_COMPLETED)
        assert versions(sft) == []  # kept, but every_s has not passed yet

        event = await asyncio.wait_for(announced.get(), timeout=EVERY_S + 10)
        assert time.monotonic() - started >= EVERY_S
        assert versions(sft) == [1]
        assert (event.flow, event.format, event.version, event.rows) == ("support", "sft", 1, 3)

        # No change since: several periods later there is still one version.
        await asyncio.sleep(3 * EVERY_S)
        assert versions(sft) == [1]
        assert announced.empty()

        # A change: the next period exports it.
        await broker.publish(completed_event(3), topic=RECORDS_COMPLETED)
        event = await asyncio.wait_for(announced.get(), timeout=EVERY_S + 10)
        assert versions(sft) == [1, 2]
        assert (event.version, event.rows) == (2, 4)
        for close in ctx.closers:
            await close()
