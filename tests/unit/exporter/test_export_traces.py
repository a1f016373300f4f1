"""The exporter keeps each record in its own trace (a span per kept record, a child of the
context its completed message carried) and links the export that writes the new version to
the records it takes in."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from devstack.sample_records import completed, preference, record, response
from services.exporter.app import register
from shared.broker import build_broker
from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, DatasetExported
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import ExportSettings, Settings
from shared.telemetry import context_from_traceparent
from tests.support.spans import kept_spans, spans_about, trace_id_of

TRACEPARENTS = {
    "r1": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "r2": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}
EXPORT_SPAN = "exporter export support"
FLOWS = {
    "flows": {
        "support": {
            "publish": {"plugin": "preference"},
            "export": {"formats": [{"plugin": "sft"}], "every_records": 2, "every_s": 0},
        }
    }
}


def context(export_dir: Path, provider: TracerProvider) -> ServiceContext:
    settings = Settings(export=ExportSettings(dir=export_dir, check_interval_s=0.05))
    broker, dead_letters = build_broker(settings, "exporter", provider)
    return ServiceContext(
        name="exporter",
        settings=settings,
        flows=parse_flows(FLOWS, "test"),
        broker=broker,
        dead_letters=dead_letters,
        tracer_provider=provider,
    )


def completed_event(record_id: str) -> bytes:
    rec = record(record_id=record_id, instruction=f"Question {record_id}?")
    answers = (response(rec, "ann1", preference(5, 2)), response(rec, "ann2", preference(4, 1)))
    return completed(rec, *answers).to_bytes()


async def test_kept_records_stay_in_their_traces_and_the_export_links_them(
    tmp_path: Path,
) -> None:
    with kept_spans() as (provider, exporter):
        ctx = context(tmp_path, provider)
        announced: asyncio.Queue[DatasetExported] = asyncio.Queue()

        @ctx.broker.subscriber(DATASETS_EXPORTED, group_id="reader")
        async def read(message: KafkaMessage) -> None:
            announced.put_nowait(DatasetExported.model_validate_json(message.body))

        register(ctx)
        async with TestKafkaBroker(ctx.broker) as broker:
            for record_id, traceparent in TRACEPARENTS.items():
                upstream = trace.get_current_span(context_from_traceparent(traceparent))
                with trace.use_span(upstream):  # completed in the record's trace
                    await broker.publish(completed_event(record_id), topic=RECORDS_COMPLETED)
            event = await asyncio.wait_for(announced.get(), timeout=30)
            # The export's span ends once the announcement is noted in the store.
            for _ in range(100):
                if any(s.name == EXPORT_SPAN for s in exporter.get_finished_spans()):
                    break
                await asyncio.sleep(0.05)
        assert event.rows == 2
        keep_spans = {}
        for record_id, traceparent in TRACEPARENTS.items():
            [keep] = [s for s in spans_about(exporter, record_id) if s.name == "exporter keep"]
            assert keep.context.trace_id == trace_id_of(traceparent)
            keep_spans[keep.context.span_id] = record_id
        [export] = [s for s in exporter.get_finished_spans() if s.name == EXPORT_SPAN]
        assert {link.context.span_id for link in export.links} == set(keep_spans)
