"""The collector's events join the record's trace: the publisher stored the record's
`traceparent` in Argilla; the spans for its answers (by webhook or by reconciliation) are
children of it, and the events they send carry it on to the exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED
from shared.telemetry import context_from_headers
from tests.support.spans import kept_spans, spans_about, trace_id_of
from tests.unit.feedback_collector.fakes import FakeArgilla, FakeBroker, Life, loopline_record

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    with kept_spans() as kept:
        yield kept


def carried_trace(broker: FakeBroker, topic: str) -> set[int]:
    return {
        trace.get_current_span(context_from_headers(m.headers.items())).get_span_context().trace_id
        for m in broker.topics[topic]
    }


@pytest.mark.parametrize("how", ["webhook", "reconciliation"])
async def test_answers_join_the_records_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    provider, exporter = spans
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    record = argilla.add(dataset, loopline_record("r1"))
    record.traceparent = TRACEPARENT
    response = argilla.respond(record, "ann1", rating=4)
    life = Life(argilla, broker, monkeypatch, tracer_provider=provider)
    await life.start()
    if how == "webhook":
        await life.webhook(argilla.response_hook(record, response))
        await life.webhook(argilla.completed_hook(record))
    else:
        await life.reconcile()

    found = spans_about(exporter, "r1")
    assert {span.name for span in found} == {
        f"feedback-collector emit {FEEDBACK_RESPONSES}",
        f"feedback-collector emit {RECORDS_COMPLETED}",
    }
    assert {span.context.trace_id for span in found} == {trace_id_of(TRACEPARENT)}
    assert {span.parent.span_id for span in found if span.parent} == {0xB7AD6B7169203331}
    for topic in (FEEDBACK_RESPONSES, RECORDS_COMPLETED):
        assert carried_trace(broker, topic) == {trace_id_of(TRACEPARENT)}
