"""The ingester as `register` wires it (its HTTP app and its `records.incoming` consumer), on
FastStream's in-memory test broker, with every message it publishes collected by topic."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.ingester.app import SERVICE, register
from shared.broker import build_broker
from shared.flows import FlowsConfig
from shared.service import ServiceContext
from shared.settings import IngestSettings, Settings
from tests.unit.ingester.http_app import FLOWS

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Small limits, so the fuzzers reach them. LLM spans without content wait for their log events
# longer than a fuzz run, so none is counted while the counts are compared.
FUZZ_SETTINGS = Settings(
    ingest=IngestSettings(
        max_batch=20,
        max_spans=20,
        max_log_records=20,
        max_body_bytes=256 * 1024,
        max_depth=16,
        otlp_join_wait_s=3600,
    )
)


@dataclass
class WiredIngester:
    context: ServiceContext
    app: Any  # the ingester's FastAPI app
    published: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def published_ids(self) -> set[str]:
        return {key for keys in self.published.values() for key in keys}

    def asgi_with_test_broker(self) -> ASGIApp:
        """The app, with its lifespan running FastStream's test broker on the app's own loop
        (schemathesis serves ASGI apps from a loop of its own)."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                await self.app(scope, receive, send)
                return
            await receive()  # lifespan.startup
            async with TestKafkaBroker(self.context.broker):
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})

        return app


def wire_ingester(settings: Settings = FUZZ_SETTINGS, flows: FlowsConfig = FLOWS) -> WiredIngester:
    broker, dead_letters = build_broker(settings, "ingester")
    context = ServiceContext(
        name="ingester", settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )
    register(context)
    [server] = context.http_servers
    wired = WiredIngester(context, server.app)
    for topic in SERVICE.produces:
        broker.subscriber(topic, group_id="fuzz-reader")(_collector(wired, topic))
    return wired


def _collector(wired: WiredIngester, topic: str) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def collect(message: KafkaMessage) -> None:
        key = message.raw_message.key
        wired.published[topic].append(key.decode() if isinstance(key, bytes) else str(key))

    collect.__name__ = f"fuzz_collect_{topic.replace('.', '_')}"
    return collect
