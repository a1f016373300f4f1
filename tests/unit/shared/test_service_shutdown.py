"""`run_service`'s stop: a drain that times out still stops the broker, runs every closer and
flushes the traces (on FastStream's in-memory test broker, an HTTP server on loopback)."""

import asyncio
import socket
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import service
from shared.broker import build_broker
from shared.flows import parse_flows
from shared.service import ServiceContext, ServiceSpec, run_service
from shared.settings import Settings

FLOWS = parse_flows({"flows": {"f": {}}}, "test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StuckService:
    """A service whose HTTP handler never finishes, one closer that fails, one that never
    finishes and one that works; its spans wait in a batch processor until flushed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.settings = Settings(shutdown_timeout_s=0.3)
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider()
        # An hour between exports: only a flush at shutdown sends the span.
        self.provider.add_span_processor(
            BatchSpanProcessor(self.spans, schedule_delay_millis=3_600_000)
        )
        self.broker, self.dead_letters = build_broker(self.settings, "stuck", self.provider)
        self.port = free_port()
        self.entered = asyncio.Event()
        self.closed: list[str] = []

        async def no_topics(kafka: Any, topics: Any) -> list[str]:
            return []

        monkeypatch.setattr(service, "ensure_topics", no_topics)
        monkeypatch.setattr(service, "build_tracer_provider", lambda *_: self.provider)
        monkeypatch.setattr(service, "build_broker", lambda *_: (self.broker, self.dead_letters))

        app = FastAPI()
        tracer = self.provider.get_tracer("test")

        @app.post("/stuck")
        async def stuck() -> None:
            with tracer.start_as_current_span("request received"):
                pass
            self.entered.set()
            await asyncio.Event().wait()  # never finishes

        async def failing_close() -> None:
            self.closed.append("failing")
            raise ConnectionError("the pool was already gone")

        async def endless_close() -> None:
            self.closed.append("endless")
            await asyncio.Event().wait()

        async def close() -> None:
            self.closed.append("close")

        def register(context: ServiceContext) -> None:
            context.serve_http(app, "127.0.0.1", self.port)
            context.on_stop(failing_close)
            context.on_stop(endless_close)
            context.on_stop(close)

        self.spec = ServiceSpec(name="stuck", consumes=(), produces=("x",), register=register)


async def test_a_drain_that_times_out_still_stops_the_broker_closers_and_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = StuckService(monkeypatch)
    stop, ready = asyncio.Event(), asyncio.Event()
    async with TestKafkaBroker(s.broker) as broker:
        broker_stop: Any = broker.stop  # FastStream's test double of the real stop
        running = asyncio.create_task(
            run_service(s.spec, s.settings, stop=stop, flows=FLOWS, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.port}") as client:
            request = asyncio.create_task(client.post("/stuck", timeout=60))
            await asyncio.wait_for(s.entered.wait(), 30)
            stop.set()
            context = await asyncio.wait_for(running, 60)
            answer = await request
        # Cut off after the timeout: a server error, which clients retry.
        assert answer.status_code == 500
        assert broker_stop.await_count == 1
    assert context.name == "stuck"
    # Every closer ran, in order, though one failed and one never finished.
    assert s.closed == ["failing", "endless", "close"]
    assert [span.name for span in s.spans.get_finished_spans()] == ["request received"]


async def test_what_a_service_still_holds_is_published_before_the_broker_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = StuckService(monkeypatch)
    published: list[bytes] = []
    stops: list[int] = []  # how often the broker was stopped when the drain ran

    @s.broker.subscriber("x")
    async def read(body: bytes) -> None:
        published.append(body)

    registered = s.spec.register

    def register(context: ServiceContext) -> None:
        async def drain() -> None:
            stops.append(stopping.await_count)
            await context.broker.publish(b"held until the stop", topic="x")

        context.before_broker_stop(drain)
        registered(context)

    spec = ServiceSpec(name="stuck", consumes=(), produces=("x",), register=register)
    stop, ready = asyncio.Event(), asyncio.Event()
    async with TestKafkaBroker(s.broker) as broker:
        stopping: Any = broker.stop  # FastStream's test double of the real stop
        task = asyncio.create_task(
            run_service(spec, s.settings, stop=stop, flows=FLOWS, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 60)
    assert stops == [0]
    assert published == [b"held until the stop"]


async def test_a_start_step_that_fails_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The start fails after the health server, the broker and the traces were set up (as the
    # publisher's does when Argilla refuses its key): the error comes out, and the health port,
    # the broker, the closers and the traces are stopped as at a stop.
    s = StuckService(monkeypatch)
    health_port = free_port()
    settings = s.settings.model_copy(
        update={"health_host": "127.0.0.1", "health_port": health_port}
    )
    registered = s.spec.register

    def register(context: ServiceContext) -> None:
        async def refused() -> None:
            with s.provider.get_tracer("test").start_as_current_span("preparing"):
                pass
            raise PermissionError("Argilla refused the key")

        context.before_consuming(refused)
        registered(context)

    spec = ServiceSpec(name="stuck", consumes=(), produces=("x",), register=register)
    async with TestKafkaBroker(s.broker) as broker:
        stopping: Any = broker.stop
        with pytest.raises(PermissionError, match="refused the key"):
            await asyncio.wait_for(run_service(spec, settings, flows=FLOWS), 60)
        assert stopping.await_count == 1
    with socket.socket() as again:  # the health port is free again
        again.bind(("127.0.0.1", health_port))
    assert s.closed == ["failing", "endless", "close"]
    assert [span.name for span in s.spans.get_finished_spans()] == ["preparing"]
