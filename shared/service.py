"""Running one Loopline service: broker, topics, handlers, health endpoint, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import uvicorn
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from opentelemetry.trace import Tracer
from pydantic import BaseModel

from shared.broker import build_broker, ensure_topics
from shared.dead_letters import DeadLetters
from shared.events import Record, dead_letter_topic, read_event, utc_now
from shared.failures import PermanentError, TransientError
from shared.flows import Flow, FlowsConfig, check_plugins, load_flows, next_topic
from shared.group_membership import GroupMembership
from shared.health import HealthServer, serve_health
from shared.message_size import fit
from shared.metrics import record_passed
from shared.plugins import PluginRegistry
from shared.produced import PassedOn, ProducedIndex
from shared.settings import KafkaSettings, Settings
from shared.telemetry import (
    build_tracer_provider,
    context_from_headers,
    link_to,
    record_span,
    tracer_of,
)

log = logging.getLogger("loopline.service")

EventT = TypeVar("EventT", bound=BaseModel)


class UnknownFlowError(TransientError):
    """A record of a flow this service does not know (yet): held, then dead-lettered."""


@dataclass
class ServiceStats:
    started_at: float = field(default_factory=time.monotonic)
    processed: int = 0
    in_flight: int = 0
    phase: Literal["starting", "running", "stopping"] = "starting"  # run_service's


@dataclass(frozen=True)
class HttpServer:
    app: Any
    host: str
    port: int


@dataclass
class ServiceContext:
    """What a service's handlers get: its name, settings, flows, broker and counters."""

    name: str
    settings: Settings
    flows: FlowsConfig
    broker: KafkaBroker
    dead_letters: DeadLetters
    stats: ServiceStats = field(default_factory=ServiceStats)
    membership: GroupMembership = field(default_factory=GroupMembership)  # its consumers' joins
    http_servers: list[HttpServer] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    drainers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    unknown_flows: dict[str, float] = field(default_factory=dict)  # flow -> first seen
    # What this stage already passed on, for `consume_concurrently(once_per_record=True)`:
    # run_service reads the stage's output topics back; None (in-memory tests) keeps nothing.
    passed_on: PassedOn | None = None
    # Where the service's spans go (the process's global provider when None: in-memory tests).
    tracer_provider: trace.TracerProvider | None = None

    @property
    def tracer(self) -> Tracer:
        return tracer_of(self.tracer_provider)

    def before_consuming(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` at start, once the health port is up and Kafka answers, before anything
        is consumed (say, creating what the handlers write to). A step waits out what is not
        there yet under `dead_letters.with_retries` (`/healthz` says on what); its error ends
        the start, as a wrong configuration should."""
        self.starters.append(step)

    def before_broker_stop(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` at a stop once the HTTP servers took their last request, while the
        broker still runs (say, publishing what a service still holds)."""
        self.drainers.append(step)

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` (say, closing an HTTP client pool) once the broker has drained."""
        self.closers.append(close)

    def serve_http(self, app: Any, host: str, port: int) -> None:
        """Serve an ASGI app while the service runs (started after the broker, stopped first)."""
        self.http_servers.append(HttpServer(app, host, port))

    def flow(self, name: str) -> Flow:
        """The flow a record names.

        A flow this service does not know may be on its way (a rollout where another service
        got the new flow file first): its records are held, a transient failure, for
        `unknown_flow_grace_s` from the first one seen; after that they are dead-lettered.
        """
        flow = self.flows.flows.get(name)
        if flow is not None:
            return flow
        grace = self.settings.unknown_flow_grace_s
        now = time.monotonic()
        waited = now - self.unknown_flows.setdefault(name, now)
        missing = f"flow {name!r} is not in this service's flow file ({self.settings.flows_file})"
        if grace > 0 and waited < grace:
            raise UnknownFlowError(f"{missing}; holding its records for up to {grace:.0f} s")
        raise PermanentError(f"{missing}, held {grace:.0f} s")

    async def pass_on(self, record: Record, stage: str, **changes: Any) -> None:
        """Publish `record` with `changes` to the input of the next stage its flow uses (kept
        under the message limit by `shared.message_size.fit`)."""
        updated = record.model_copy(update={**changes, "updated_at": utc_now()})
        topic = self.settings.kafka.topic(next_topic(self.flow(record.flow), stage))
        body = fit(updated, self.settings.kafka.max_message_bytes)
        key = record.record_id.encode()
        # The broker's trouble is retried here, so the work already done (LLM calls paid for)
        # is never done again nor dead-lettered for it.
        await self.dead_letters.with_retries(
            lambda: self.broker.publish(body, topic=topic, key=key), f"publishing to {topic}"
        )
        if self.passed_on is not None:
            self.passed_on.add(record.record_id)
        record_passed(self.name, record.flow, stage)

    async def _passed_on_before(self, event: BaseModel) -> bool:
        record_id = getattr(event, "record_id", None)
        if self.passed_on is None or not isinstance(record_id, str):
            return False
        if not await self.passed_on.contains(record_id):
            return False
        log.info("%s: %s was passed on before (a redelivery); skipped", self.name, record_id)
        return True

    @property
    def group_id(self) -> str:
        return consumer_group(self.settings.kafka, self.name)

    def consume(
        self,
        topic: str,
        event_type: type[EventT],
        handle: Callable[[EventT, ServiceContext], Awaitable[None]],
    ) -> None:
        """Subscribe `handle` to `topic` (a logical name: the set's topic is read) in the
        service's consumer group.

        The message is validated as `event_type` (a bad one goes to the DLQ). The offset is
        committed only after `handle` returned, so a crash means redelivery, never loss.
        """
        kafka = self.settings.kafka

        async def on_message(message: KafkaMessage) -> None:
            event = read_event(event_type, message.body)
            record_id = getattr(event, "record_id", None) or _key_of(message.raw_message)
            self.stats.in_flight += 1
            try:
                # A child of FastStream's span for the message, itself in the record's trace.
                with record_span(self.tracer, f"{self.name} process {topic}", record_id):
                    await handle(event, self)
            finally:
                self.stats.in_flight -= 1
            self.stats.processed += 1

        on_message.__name__ = f"{self.name}_{topic.replace('.', '_')}"
        self.broker.subscriber(
            kafka.topic(topic),
            group_id=self.group_id,
            listener=self.membership.listener(on_message.__name__),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset=kafka.auto_offset_reset,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        )(on_message)

    def consume_concurrently(
        self,
        topic: str,
        event_type: type[EventT],
        handle: Callable[[EventT, ServiceContext], Awaitable[None]],
        max_batch: int,
        once_per_record: bool = False,
    ) -> None:
        """Handle up to `max_batch` messages of `topic` at once (for slow, I/O-bound work).

        With `once_per_record`, a redelivered record this stage already passed on (by any of
        its instances: `passed_on`) is skipped, not worked on again: its output is out already.

        The batch's offsets are committed once every message in it was handled or
        dead-lettered. Each message is retried on its own by kind of failure
        (`DeadLetters.with_retries`): a transient failure for as long as it lasts, so the batch
        waits; a message that fails validation or is otherwise bad goes to the DLQ on its own
        and the others go on. Only a failure to write a dead letter fails the batch, which is
        then consumed again.
        """

        async def one(record: Any) -> None:
            async def handle_one() -> None:
                event = read_event(event_type, record.value or b"")
                if once_per_record and await self._passed_on_before(event):
                    return
                await handle(event, self)

            with record_span(
                self.tracer,
                f"{self.name} process {topic}",
                _key_of(record),
                parent=context_from_headers(record.headers),  # the record's own trace
                links=link_to(trace.get_current_span()),  # the batch's span
            ):
                if await self.dead_letters.run([record], handle_one, f"handling {topic}"):
                    self.stats.processed += 1

        async def on_batch(message: KafkaMessage) -> None:
            records = list(message.raw_message)
            self.stats.in_flight += len(records)
            try:
                await asyncio.gather(*(one(record) for record in records))
            finally:
                self.stats.in_flight -= len(records)

        on_batch.__name__ = f"{self.name}_{topic.replace('.', '_')}_batch"
        self.subscribe_batches([topic], on_batch, max_records=max_batch)
        if once_per_record and self.passed_on is not None:
            starting = self.passed_on.start
            if starting not in self.starters:  # once, whatever the consumers asking
                self.before_consuming(starting)

    def subscribe_batches(
        self,
        topics: Sequence[str],
        handle: Callable[[KafkaMessage], Awaitable[None]],
        *,
        max_records: int,
        batch_timeout_ms: int = 200,
        max_poll_interval_ms: int | None = None,
    ) -> None:
        """Subscribe `handle` to batches of `topics` (logical names: the set's topics are
        read) in the service's consumer group.

        The batch's offsets are committed only after `handle` returned; if it raises, the
        batch is consumed again. `max_poll_interval_ms` defaults to the Kafka settings'.
        """
        kafka = self.settings.kafka
        self.broker.subscriber(
            *(kafka.topic(t) for t in topics),
            group_id=self.group_id,
            listener=self.membership.listener(getattr(handle, "__name__", ",".join(topics))),
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset=kafka.auto_offset_reset,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms or kafka.max_poll_interval_ms,
        )(handle)


def consumer_group(kafka: KafkaSettings, service: str) -> str:
    """The consumer group of a service's subscribers: `<group_prefix>-<service>`."""
    return f"{kafka.group_prefix}-{service}"


def _key_of(consumed: Any) -> str:
    """The record id a consumed Kafka message is keyed by (every topic is keyed by it)."""
    key = getattr(consumed, "key", None)
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key or "")


@dataclass(frozen=True)
class ServiceSpec:
    """A service: its name, the topics it reads and writes (logical names: the flow set's
    topics are `KafkaSettings.topic` of them), and how it registers handlers."""

    name: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    register: Callable[[ServiceContext], None]
    description: str = ""

    def topics(self) -> list[str]:
        """Every topic the service needs, with the dead-letter topics of its inputs."""
        return [*self.consumes, *(dead_letter_topic(t) for t in self.consumes), *self.produces]


def load_checked_flows(settings: Settings, registry: PluginRegistry | None = None) -> FlowsConfig:
    flows = load_flows(settings.flows_file)
    check_plugins(flows, registry or PluginRegistry(), str(settings.flows_file))
    return flows


class _EmbeddedServer(uvicorn.Server):
    """Uvicorn inside a service: the service, not uvicorn, handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _start_http(spec: HttpServer) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        spec.app,
        host=spec.host,
        port=spec.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raise the start-up error (e.g. port in use)
            raise RuntimeError(f"HTTP server on {spec.host}:{spec.port} stopped during start-up")
        await asyncio.sleep(0.02)
    log.info("HTTP API at http://%s:%s (docs at /docs)", spec.host, spec.port)
    return server, task


async def run_service(
    spec: ServiceSpec,
    settings: Settings,
    stop: asyncio.Event | None = None,
    flows: FlowsConfig | None = None,
    ready: asyncio.Event | None = None,
) -> ServiceContext:
    """Run `spec` until SIGTERM/SIGINT (or `stop` is set), then drain and stop cleanly.

    `ready` is set once the topics exist and the broker is consuming.
    """
    flows = flows if flows is not None else load_checked_flows(settings)
    tracer_provider = build_tracer_provider(spec.name, settings.telemetry)
    broker, dead_letters = build_broker(settings, spec.name, tracer_provider)
    passed_on = ProducedIndex(settings.kafka, spec.produces)  # read back only when asked
    context = ServiceContext(
        name=spec.name,
        settings=settings,
        flows=flows,
        broker=broker,
        dead_letters=dead_letters,
        passed_on=passed_on,
        tracer_provider=tracer_provider,
    )
    context.on_stop(passed_on.stop)
    spec.register(context)

    health: HealthServer | None = None
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # A start that fails (Argilla refusing the key, a port in use) stops what it had started,
    # as a stop does, before its error comes out.
    try:
        if settings.health_port is not None:  # /healthz and /metrics (shared.health)
            health = await serve_health(
                context, settings.health_host, settings.health_port, spec.consumes
            )
        # Kafka may not answer yet (pods start in any order): wait for it, live but not ready,
        # `/healthz` saying so, rather than exit into a crash loop.
        created = await dead_letters.with_retries(
            partial(ensure_topics, settings.kafka, spec.topics()),
            f"connecting to Kafka at {settings.kafka.bootstrap_servers}",
        )
        if created:
            log.info("%s: created topics %s", spec.name, ", ".join(created))
        await broker.connect()  # publishing and /healthz's ping work while the steps run
        for step in context.starters:
            await step()
        await broker.start()
        for http in context.http_servers:
            servers.append(await _start_http(http))
        log.info(
            "%s: running (group %s, consuming %s)",
            spec.name,
            context.group_id,
            ", ".join(settings.kafka.topic(t) for t in spec.consumes) or "nothing",
        )
        context.stats.phase = "running"
        if ready is not None:
            ready.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        started = context.stats.phase == "running"
        context.stats.phase = "stopping"
        if started:
            log.info(
                "%s: stopping, draining %d in-flight message(s) (timeout %.0fs)",
                spec.name,
                context.stats.in_flight,
                settings.shutdown_timeout_s,
            )
        else:
            log.error("%s: the start failed; stopping what it had started", spec.name)
        timeout = settings.shutdown_timeout_s

        # Every step is bounded and its failure logged, so a drain that times out (a handler
        # that never finishes) or a closer that fails never skips the steps after it: the
        # broker is stopped, every closer runs and the traces are flushed.
        async def bounded(step: Awaitable[Any], what: str, seconds: float) -> None:
            try:
                await asyncio.wait_for(step, timeout=seconds)
            except TimeoutError:
                log.warning("%s: %s timed out after %.1fs", spec.name, what, seconds)
            except Exception:
                log.exception("%s: %s failed", spec.name, what)

        if health is not None:
            await bounded(health.stop(), "stopping the health server", 5)
        for server, _ in servers:
            # Requests still running after the timeout are cancelled by uvicorn itself.
            server.config.timeout_graceful_shutdown = max(1, round(timeout))
            server.should_exit = True
        for server, task in servers:
            await bounded(
                task, f"stopping the HTTP server on port {server.config.port}", timeout + 5
            )
        for step in context.drainers:
            await bounded(step(), f"draining ({getattr(step, '__qualname__', step)})", timeout)
        # The broker drains in-flight messages for up to `timeout` (its graceful timeout);
        # what is unfinished then is not committed: it will be redelivered.
        await bounded(broker.stop(), "stopping the broker", timeout + 5)
        for close in context.closers:
            await bounded(close(), f"closing ({getattr(close, '__qualname__', close)})", timeout)
        try:
            tracer_provider.shutdown()  # flushes the spans still held in batches
        except Exception:
            log.exception("%s: flushing the traces failed", spec.name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("%s: stopped after %d message(s)", spec.name, context.stats.processed)
    return context
