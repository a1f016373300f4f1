"""The argilla-publisher service on FastStream's test broker, writing to `FakeArgilla`.

Only the parts that need a server are replaced: `prepare` creates (or finds) the flow's
datasets in the fake, `payload` makes a small bulk item of the Argilla record. The bulk writer,
the handler, the retry policy and the dead letters are the real ones. `records.published`
publishes are kept in order (and can be scripted to fail, as Kafka does); dead letters are read
back from `records.judged.dlq`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from services.argilla_publisher import app as publisher_app
from services.argilla_publisher import publishing
from services.argilla_publisher.bulk import BulkWriter
from services.argilla_publisher.targets import Publication, Target
from shared.broker import build_broker
from shared.dead_letters import DeadLetter
from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, PublishedRecord, Record
from shared.flows import FlowsConfig, PublishRef, parse_flows
from shared.service import ServiceContext
from shared.settings import ArgillaSettings, Settings
from shared.templates import Template
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla


@dataclass
class FakeDataset:
    name: str
    id: str


@dataclass
class Harness:
    argilla: FakeArgilla
    context: ServiceContext
    published: list[PublishedRecord] = field(default_factory=list)
    publish_failures: int = 0  # the next records.published publishes that fail
    dead: list[DeadLetter] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)  # flows prepared, in order

    def dead_by_id(self) -> dict[str, DeadLetter]:
        return {Record.model_validate_json(d.body).record_id: d for d in self.dead}

    def published_ids(self) -> list[str]:
        return sorted(p.record_id for p in self.published)


def flows(**publish: dict[str, Any]) -> FlowsConfig:
    """Flows named by keyword, each with its `publish` section."""
    return parse_flows({"flows": {n: {"publish": p} for n, p in publish.items()}}, "test flows")


def fake_payload(record: Any, dataset: Any) -> dict[str, Any]:
    return {
        "external_id": str(record.id),
        "fields": record.fields.to_dict(),
        "metadata": dict(record.metadata.items()),
    }


@asynccontextmanager
async def publisher(
    monkeypatch: pytest.MonkeyPatch,
    argilla: FakeArgilla,
    config: FlowsConfig,
    settings: Settings | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Harness]:
    """The publisher registered and its test broker running; records go in with `send`.
    Topics are the flow set's of `settings` (its Kafka topic prefix)."""
    argilla_settings = ArgillaSettings(api_key=SecretStr("secret-key"))
    settings = (settings or Settings()).model_copy(update={"argilla": argilla_settings})
    kafka = settings.kafka
    broker, dead_letters = build_broker(settings, "argilla-publisher", tracer_provider)
    context = ServiceContext(
        name="argilla-publisher",
        settings=settings,
        flows=config,
        broker=broker,
        dead_letters=dead_letters,
        tracer_provider=tracer_provider,
    )
    h = Harness(argilla, context)

    async def no_sleep(seconds: float) -> None:
        h.sleeps.append(seconds)

    dead_letters.sleep = no_sleep

    def fake_prepare(
        client: Any, flow: str, ref: PublishRef, template: Template, workspace: str
    ) -> Publication:
        h.prepared.append(flow)
        name = ref.dataset or flow
        owners = list(ref.annotators) if ref.mode == "split" else [None]
        targets = []
        for annotator in owners:
            space = f"{ref.workspace or workspace}-{annotator}" if annotator else workspace
            key = f"{space}/{name}"
            live = [i for i, n in argilla.names.items() if n == key and i in argilla.datasets]
            dataset_id = live[-1] if live else argilla.create(key)
            targets.append(Target(FakeDataset(name, dataset_id), space, annotator))
        return Publication(flow, template, tuple(targets), ref.when)

    def writer(api_url: str, api_key: str, **options: Any) -> BulkWriter:
        return BulkWriter(api_url, api_key, transport=argilla.transport(), **options)

    monkeypatch.setattr(publisher_app.rg, "Argilla", lambda **_: object())
    monkeypatch.setattr(publisher_app, "BulkWriter", writer)
    monkeypatch.setattr(publisher_app, "prepare", fake_prepare)
    monkeypatch.setattr(publishing, "payload", fake_payload)

    @broker.subscriber(kafka.topic(f"{RECORDS_JUDGED}.dlq"), group_id="dlq-reader")
    async def read_dlq(message: KafkaMessage) -> None:
        h.dead.append(DeadLetter.from_headers(message.body, dict(message.headers)))

    publisher_app.register(context)
    for step in context.starters:  # as run_service does before consuming
        await step()
    async with TestKafkaBroker(broker):
        original = broker.publish

        async def publish(body: bytes, *, topic: str, **options: Any) -> Any:
            if topic != kafka.topic(RECORDS_PUBLISHED):
                return await original(body, topic=topic, **options)
            if h.publish_failures > 0:
                h.publish_failures -= 1
                raise KafkaTimeoutError("scripted: the broker did not answer in time")
            h.published.append(PublishedRecord.model_validate_json(body))
            # An unconfirmed publish returns a future to await later.
            return asyncio.sleep(0) if options.get("no_confirm") else None

        monkeypatch.setattr(broker, "publish", publish)
        try:
            yield h
        finally:
            for close in context.closers:
                await close()


async def send(h: Harness, records: list[Record], partition: int | None = None) -> None:
    """One batch of judged records, as the publisher consumes it."""
    bodies = (r.to_bytes() for r in records)
    topic = h.context.settings.kafka.topic(RECORDS_JUDGED)
    await h.context.broker.publish_batch(*bodies, topic=topic, partition=partition)
