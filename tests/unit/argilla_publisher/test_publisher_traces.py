"""The publisher keeps each record in its own trace: a span per record as a child of the
context its judged message carried, and that context stored in Argilla (metadata
`loopline_traceparent`) so the collector's spans for the answers join the same trace."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from devstack.sample_records import record
from shared.argilla_metadata import TRACE_METADATA_KEY
from shared.telemetry import context_from_traceparent
from tests.support.spans import kept_spans, spans_about, trace_id_of
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla
from tests.unit.argilla_publisher.publisher_harness import flows, publisher, send

TRACEPARENTS = {
    "r1": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "r2": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


async def test_each_record_is_published_in_its_own_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla()
    with kept_spans() as (provider, exporter):
        config = flows(pub={"plugin": "preference"})
        async with publisher(monkeypatch, argilla, config, tracer_provider=provider) as h:
            for record_id, traceparent in TRACEPARENTS.items():
                # Judged in the record's trace: the judge's publish carries its context.
                upstream = trace.get_current_span(context_from_traceparent(traceparent))
                with trace.use_span(upstream):
                    await send(h, [record(flow="pub", record_id=record_id)])
        stored = argilla.records("admin/pub")
        for record_id, traceparent in TRACEPARENTS.items():
            found = spans_about(exporter, record_id)
            assert {span.name for span in found} == {
                "argilla-publisher prepare",
                "argilla-publisher announce",
            }
            assert {span.context.trace_id for span in found} == {trace_id_of(traceparent)}
            kept = stored[record_id]["metadata"][TRACE_METADATA_KEY]
            assert trace_id_of(kept) == trace_id_of(traceparent)
