"""Several flow sets on one Kafka cluster (`LOOPLINE_KAFKA__TOPIC_PREFIX`): each of the six
services, built as it runs, subscribes to, publishes to and creates only its set's topics, none
left without the prefix; and two sets on one broker never see each other's records.

On FastStream's in-memory test broker (the feedback collector, which consumes no topic, on its
unit tests' fake broker). What a service subscribes to is read from the broker's subscribers and
from its AsyncAPI document; what it publishes, from every `broker.publish` it makes, records
passed on, dead letters and announcements alike.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.specification import AsyncAPI

from devstack.sample_records import record
from services.exporter import app as exporter
from services.generator import app as generator
from services.ingester import app as ingester
from services.judge import app as judge
from shared.broker import build_broker
from shared.events import (
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INCOMING,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    Record,
)
from shared.flows import FlowsConfig, parse_flows
from shared.service import ServiceContext
from shared.settings import KafkaSettings, Settings
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla
from tests.unit.argilla_publisher.publisher_harness import flows as publish_flows
from tests.unit.argilla_publisher.publisher_harness import publisher, send
from tests.unit.exporter.service_helpers import close, completed_event, exporter_context
from tests.unit.feedback_collector.fakes import FakeArgilla as FakeArgillaServer
from tests.unit.feedback_collector.fakes import FakeBroker, Life, ago, loopline_record

PREFIX = "team-a."
KAFKA = KafkaSettings(topic_prefix=PREFIX, group_prefix="team-a")
SETTINGS = Settings(kafka=KAFKA, unknown_flow_grace_s=0)
# A flow per road a record can take out of the ingester.
FLOWS = parse_flows(
    {
        "flows": {
            "plain": {},  # straight to records.judged
            "generating": {"generate": [{"plugin": "openai"}]},  # records.ingested
            "judging": {"judge": {"plugin": "pairwise"}},  # records.generated
            "picky": {"route": {"plugin": "rules", "options": {"require_tags": ["prod"]}}},
        }
    },
    "flow sets",
)


def context(name: str, settings: Settings = SETTINGS, flows: FlowsConfig = FLOWS) -> ServiceContext:
    broker, dead_letters = build_broker(settings, name)
    return ServiceContext(
        name=name, settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )


def subscribed(broker: KafkaBroker) -> set[str]:
    """The topics the broker's subscribers read; the AsyncAPI document lists the same."""
    topics = {name for subscriber in broker.subscribers for name in subscriber.topic_names}
    document = json.loads(AsyncAPI(broker, schema_version="3.0.0").to_specification().to_json())
    assert {channel["address"] for channel in document["channels"].values()} == topics
    assert not broker.publishers  # the services publish with `broker.publish`, seen below
    return topics


def published_by(broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every topic `broker.publish` is asked to publish to from now on (the test's inputs too)."""
    topics: list[str] = []
    original = broker.publish

    async def publish(message: Any, *args: Any, topic: str, **options: Any) -> Any:
        topics.append(topic)
        return await original(message, *args, topic=topic, **options)

    monkeypatch.setattr(broker, "publish", publish)
    return topics


def the_sets(*names: str) -> set[str]:
    return {KAFKA.topic(name) for name in names}


def without_the_prefix(topics: set[str] | list[str]) -> set[str]:
    return {topic for topic in topics if not topic.startswith(PREFIX)}


async def test_the_ingester(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context("ingester")
    ingester.register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        published = published_by(broker, monkeypatch)
        for flow in FLOWS.flows:
            raw = {"flow": flow, "instruction": f"A question for {flow}?"}
            await broker.publish(json.dumps(raw).encode(), topic=KAFKA.topic(RECORDS_INCOMING))
        await broker.publish(b'{"flow": "plain"}', topic=KAFKA.topic(RECORDS_INCOMING))  # DLQ
    assert subscribed(ctx.broker) == the_sets(RECORDS_INCOMING)
    assert set(published) == the_sets(
        RECORDS_INCOMING,
        RECORDS_INGESTED,
        RECORDS_GENERATED,
        RECORDS_JUDGED,
        "records.unrouted",
        "records.incoming.dlq",
    )


@pytest.mark.parametrize(
    ("service", "register", "reads"),
    [
        ("generator", generator.register, RECORDS_INGESTED),
        ("judge", judge.register, RECORDS_GENERATED),
    ],
)
async def test_the_generator_and_the_judge(
    monkeypatch: pytest.MonkeyPatch, service: str, register: Any, reads: str
) -> None:
    ctx = context(service)
    register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        published = published_by(broker, monkeypatch)
        passed = Record(flow="plain", instruction="q?").to_bytes()  # nothing to ask an LLM
        await broker.publish(passed, topic=KAFKA.topic(reads))
        await broker.publish(b"not a record", topic=KAFKA.topic(reads))
    for closer in ctx.closers:
        await closer()
    assert subscribed(ctx.broker) == the_sets(reads)
    assert set(published) == the_sets(reads, RECORDS_JUDGED, f"{reads}.dlq")


async def test_the_argilla_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    config = publish_flows(pub={"plugin": "preference"})
    async with publisher(monkeypatch, FakeArgilla(), config, settings=SETTINGS) as h:
        published = published_by(h.context.broker, monkeypatch)
        await send(h, [record(flow="pub", record_id="r1")])
        await h.context.broker.publish_batch(b"junk", topic=KAFKA.topic(RECORDS_JUDGED))
        assert subscribed(h.context.broker) == the_sets(RECORDS_JUDGED, "records.judged.dlq")
    assert h.published_ids() == ["r1"]
    assert [letter.body for letter in h.dead] == [b"junk"]
    # (the harness's own reader of the dead letters subscribes to records.judged.dlq)
    assert set(published) == the_sets("records.published", "records.judged.dlq")


async def test_the_feedback_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    argilla, broker = FakeArgillaServer(), FakeBroker(max_message_bytes=65_536)
    dataset = argilla.dataset("support")
    big = argilla.add(dataset, loopline_record("big", text="x" * 100_000))  # dead-lettered
    argilla.respond(big, "ann1", at=ago(60), rating=1)
    small = argilla.add(dataset, loopline_record("small"))
    argilla.respond(small, "ann1", at=ago(50), rating=5)
    life = Life(argilla, broker, monkeypatch, settings=SETTINGS)
    await life.start()
    await life.reconcile()
    assert set(broker.topics) == the_sets(
        "feedback.responses",
        "records.completed",
        "records.completed.dlq",
        "feedback.collector.state",
    )
    [dead] = broker.topics[KAFKA.topic("records.completed.dlq")]
    assert dead.headers["loopline-source-topic"] == KAFKA.topic(RECORDS_COMPLETED)

    # Its state is read back from the set's state topic: a new life sends nothing again.
    again = Life(argilla, broker, monkeypatch, settings=SETTINGS)
    await again.start()
    await again.reconcile()
    assert len(broker.topics[KAFKA.topic(RECORDS_COMPLETED)]) == 1


async def test_the_exporter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = exporter_context(tmp_path, every_records=1, kafka=KAFKA)
    exporter.register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        published = published_by(broker, monkeypatch)
        _, body = completed_event(1)
        await broker.publish(body, topic=KAFKA.topic(RECORDS_COMPLETED))
        await broker.publish(b"not json", topic=KAFKA.topic(RECORDS_COMPLETED))
        for _ in range(600):
            if KAFKA.topic("datasets.exported") in published:
                break
            await asyncio.sleep(0.05)
        await close(ctx)
    assert subscribed(ctx.broker) == the_sets(RECORDS_COMPLETED, RECORDS_JUDGED)
    assert set(published) == the_sets(
        RECORDS_COMPLETED, "records.completed.dlq", "datasets.exported"
    )


async def test_two_flow_sets_on_one_broker_never_see_each_others_records() -> None:
    """The trouble prefixes solve: without them, a set's services read the other set's records
    and dead-letter them as records of flows they do not know."""
    theirs = Settings(kafka=KafkaSettings(topic_prefix="team-b.", group_prefix="team-b"))
    ours = context("generator")  # unknown flows dead-lettered at once (grace 0)
    other = context("generator", theirs.model_copy(update={"unknown_flow_grace_s": 0}))
    other.broker = ours.broker  # one broker, both sets' subscribers
    other_flows = parse_flows({"flows": {"elsewhere": {}}}, "the other set's flows")
    other.flows = other_flows
    generator.register(ours)
    generator.register(other)
    seen: dict[str, list[str]] = {}

    def reader(topic: str) -> Any:
        async def keep(message: KafkaMessage) -> None:
            seen.setdefault(topic, []).append(Record.model_validate_json(message.body).flow)

        return keep

    for kafka in (KAFKA, theirs.kafka):
        for topic in (kafka.topic(RECORDS_JUDGED), kafka.topic("records.ingested.dlq")):
            ours.broker.subscriber(topic, group_id=f"reader-{topic}")(reader(topic))

    async with TestKafkaBroker(ours.broker) as broker:
        for flow, kafka in (("plain", KAFKA), ("elsewhere", theirs.kafka)):
            body = Record(flow=flow, instruction="q?").to_bytes()
            await broker.publish(body, topic=kafka.topic(RECORDS_INGESTED))
    for ctx in (ours, other):
        for closer in ctx.closers:
            await closer()
    assert seen == {"team-a.records.judged": ["plain"], "team-b.records.judged": ["elsewhere"]}
