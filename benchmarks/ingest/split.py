"""Where the ingester's telemetry cost goes: its pipeline on FastStream's test broker, in-process.

No HTTP, no Kafka: records go through the ingester's own path (validation, dedupe, routing, one
publish each through the service's broker and its middlewares) and the process's CPU per record
is measured, for telemetry
  off      LOOPLINE_TELEMETRY__ENABLED=false;
  metrics  on, but a no-op tracer: the brokers' metrics middlewares only;
  local    on, spans made but exported nowhere;
  on       on, spans exported over OTLP/HTTP to `otlp_sink.py` (a receiver in its own process);
  sampled  on, with one record's trace in ten kept (OTEL_TRACES_SAMPLER=parentbased_traceidratio,
           OTEL_TRACES_SAMPLER_ARG=0.1), the rest made as non-recording spans.
Rounds alternate the order; medians are shown. `--no-create-span` tries a prototype (not what
the services do): FastStream's telemetry middleware parents a publish on the current span
instead of making a `create` span first.

    python benchmarks/ingest/split.py [--records 6000] [--rounds 5] [--no-create-span]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from faststream.kafka import TestKafkaBroker
from opentelemetry import context as otel_context
from opentelemetry import trace
from otlp_sink import OtlpSink
from run import BATCH, make_batches

from services.ingester.pipeline import BrokerPublisher, IngestPipeline
from shared.broker import build_broker
from shared.flows import parse_flows
from shared.settings import Settings, TelemetrySettings
from shared.telemetry import NoTracing, build_tracer_provider, tracer_of

FLOWS = parse_flows({"flows": {"bench": {"generate": [{"plugin": "openai"}]}}}, "split")
MODES = ("off", "metrics", "local", "on", "sampled")


def without_create_span() -> None:
    """Prototype: a publish made while a span is current is parented on it, with no `create`
    span (FastStream's middleware makes one whenever its own instance holds no span)."""
    from faststream.opentelemetry.middleware import BaseTelemetryMiddleware
    from opentelemetry.trace import NonRecordingSpan

    class Parent(NonRecordingSpan):
        def is_recording(self) -> bool:  # what FastStream asks before using it as parent
            return True

    original = BaseTelemetryMiddleware.publish_scope

    async def publish_scope(self: Any, call_next: Any, msg: Any) -> Any:
        current = trace.get_current_span().get_span_context()
        if self._current_span is None and current.is_valid:
            self._current_span = Parent(current)
            self._origin_context = otel_context.get_current()
        return await original(self, call_next, msg)

    BaseTelemetryMiddleware.publish_scope = publish_scope  # type: ignore[method-assign]


async def cpu_per_record(mode: str, sink: OtlpSink, records: int) -> float:
    telemetry = TelemetrySettings(
        enabled=mode != "off", otlp_endpoint=sink.endpoint if mode in ("on", "sampled") else None
    )
    sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    for name, value in sampler.items():
        if mode == "sampled":
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    settings = Settings(telemetry=telemetry)
    provider = (
        NoTracing() if mode in ("off", "metrics") else build_tracer_provider("ingester", telemetry)
    )
    broker, _ = build_broker(settings, "ingester", provider)
    publisher = BrokerPublisher(broker, settings.kafka)
    pipeline = IngestPipeline(FLOWS, publisher, "bench", tracer=tracer_of(provider))
    batches = make_batches(max(1, records // BATCH), uuid.uuid4().hex[:6])
    async with TestKafkaBroker(broker):
        await pipeline.ingest(make_batches(1, f"warm-{uuid.uuid4().hex[:6]}")[0])
        started = time.process_time()
        for batch in batches:
            await pipeline.ingest(batch)
        provider.force_flush()  # the export of every span made is counted
        used = time.process_time() - started
    provider.shutdown()
    return used / (len(batches) * BATCH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=6000, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-create-span", action="store_true", help="the prototype")
    args = parser.parse_args()
    # A tight loop outruns the exporter: with the SDK's default queue (2,048 spans) it would drop
    # spans, and their export would look free.
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
    if args.no_create_span:
        without_create_span()
    found: dict[str, list[float]] = {mode: [] for mode in MODES}
    with OtlpSink() as sink:
        for k in range(args.rounds):
            for mode in MODES[k % len(MODES) :] + MODES[: k % len(MODES)]:
                found[mode].append(asyncio.run(cpu_per_record(mode, sink, args.records)))
        exported = sink.stats()
    print(f"{args.records:,} records a round, {args.rounds} rounds; process CPU per record:")
    off = statistics.median(found["off"])
    for mode in MODES:
        median = statistics.median(found[mode])
        print(f"  {mode:<8} {median:7.0f} us  (+{median - off:.0f} over off, {median / off:.2f}x)")
    made = args.rounds * (args.records // BATCH + 1) * BATCH  # with each round's warm-up batch
    print(f"spans at the sink: {exported.spans:,} (for {made:,} records on, as many sampled)")


if __name__ == "__main__":
    main()
