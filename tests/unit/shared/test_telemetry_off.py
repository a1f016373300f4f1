"""The telemetry off switch (LOOPLINE_TELEMETRY__ENABLED): a record through a service built as
`run_service` builds it records no span and moves no FastStream metric when it is off, and
still passes on the trace context its message carried; with it on, both are there."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings, TelemetrySettings
from shared.telemetry import (
    NoTracing,
    build_tracer_provider,
    context_from_headers,
    context_from_traceparent,
)

FLOWS = {"flows": {"f": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def faststream_samples(service: str) -> float:
    """The sum of every faststream_* sample labelled with `service`."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name.startswith("faststream_")
        for sample in family.samples
        if sample.labels.get("service") == service
    )


async def one_record(
    enabled: bool, service: str, monkeypatch: pytest.MonkeyPatch, parent: str = PARENT
) -> tuple[InMemorySpanExporter, float, list[str]]:
    """A record (published in an upstream span's context) through a stage that passes it on:
    the spans the exporter got, the faststream_* samples it added, and the trace ids the
    output carried."""
    exporter = InMemorySpanExporter()
    # Whatever provider the process has globally: a span made on it would be seen too.
    everywhere = TracerProvider()
    everywhere.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", everywhere)
    settings = Settings(telemetry=TelemetrySettings(enabled=enabled))
    provider = build_tracer_provider(service, settings.telemetry)  # as run_service does
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker, dead_letters = build_broker(settings, service, provider)
    ctx = ServiceContext(
        name=service,
        settings=settings,
        flows=parse_flows(FLOWS, "x"),
        broker=broker,
        dead_letters=dead_letters,
        tracer_provider=provider,
    )

    async def generate(record: Record, c: ServiceContext) -> None:
        await c.pass_on(record, "generate")

    ctx.consume(RECORDS_INGESTED, Record, generate)
    carried: list[str] = []

    @ctx.broker.subscriber(RECORDS_GENERATED)
    async def out(message: KafkaMessage) -> None:
        span = trace.get_current_span(context_from_headers(message.headers.items()))
        context = span.get_span_context()
        carried.append(f"{context.trace_id:032x}-{int(context.trace_flags):02x}")

    before = faststream_samples(service)
    async with TestKafkaBroker(ctx.broker) as test_broker:
        body = Record(record_id="r1", flow="f", instruction="q").to_bytes()
        upstream = trace.get_current_span(context_from_traceparent(parent))
        with trace.use_span(upstream):
            await test_broker.publish(body, topic=RECORDS_INGESTED, key="r1")
    provider.shutdown()
    everywhere.shutdown()
    return exporter, faststream_samples(service) - before, carried


async def test_off_records_no_span_and_moves_no_faststream_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter, moved, carried = await one_record(False, "unit-telemetry-off", monkeypatch)
    assert exporter.get_finished_spans() == ()
    assert moved == 0
    assert carried == [f"{TRACE_ID}-01"]  # the upstream trace context still passes on


async def test_on_records_spans_and_moves_faststream_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter, moved, carried = await one_record(True, "unit-telemetry-on", monkeypatch)
    names = {span.name for span in exporter.get_finished_spans()}
    assert any("process" in name for name in names), names
    assert moved > 0
    assert carried == [f"{TRACE_ID}-01"]


async def test_a_record_sampled_out_upstream_gets_no_span_and_stays_unsampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sampling at the ingester (OTEL_TRACES_SAMPLER=parentbased_traceidratio) is enough: a
    later stage follows the sampled flag its message carries, so a record left out costs no
    span anywhere and the next stage leaves it out too."""
    unsampled = f"00-{TRACE_ID}-00f067aa0ba902b7-00"
    exporter, _, carried = await one_record(True, "unit-sampled-out", monkeypatch, unsampled)
    assert exporter.get_finished_spans() == ()
    assert carried == [f"{TRACE_ID}-00"]


def test_the_sampler_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    provider = build_tracer_provider("ingester", TelemetrySettings())
    assert isinstance(provider, TracerProvider)
    assert "TraceIdRatioBased{0.1}" in provider.sampler.get_description()
    tracer = provider.get_tracer("t")
    recorded = sum(tracer.start_span("s").is_recording() for _ in range(2000))
    assert 100 < recorded < 300  # about one in ten


def test_off_is_the_no_op_provider_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_TELEMETRY__ENABLED", "false")
    settings = Settings()
    assert settings.telemetry.enabled is False
    assert isinstance(build_tracer_provider("x", settings.telemetry), NoTracing)
