"""The event spine against a real Kafka-protocol broker: topics, groups, DLQ, resume, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack.testing import free_port
from shared.broker import admin_client_options, ensure_topics
from shared.dead_letters import DeadLetter
from shared.events import RECORDS_COMPLETED, CompletedRecord, Record
from shared.flows import parse_flows
from shared.service import ServiceContext, ServiceSpec, run_service
from shared.settings import KafkaSettings, Settings
from tests.support.service_helpers import produce, running_service

from .conftest import REPO

FLOWS = parse_flows({"flows": {"test": {}}}, "inline")


class Collector:
    """A test service: records what its handler saw; fails on records that ask it to."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.seen: list[str] = []
        self.arrived = asyncio.Condition()

    async def handle(self, record: Record, context: ServiceContext) -> None:
        if record.instruction == "explode":
            raise RuntimeError("handler exploded on purpose")
        async with self.arrived:
            self.seen.append(record.record_id)
            self.arrived.notify_all()

    def spec(self, name: str) -> ServiceSpec:
        return ServiceSpec(
            name=name,
            consumes=(self.topic,),
            produces=(),
            register=lambda ctx: ctx.consume(self.topic, Record, self.handle),
        )

    async def wait_for(self, count: int, within_s: float = 45) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.seen) >= count), within_s)


def records(prefix: str, n: int, start: int = 0) -> list[Record]:
    return [
        Record(record_id=f"{prefix}-{i}", flow="test", instruction=f"q{i}")
        for i in range(start, start + n)
    ]


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}"


def settings_for(settings: Settings, group_prefix: str) -> Settings:
    kafka = settings.kafka.model_copy(update={"group_prefix": group_prefix})
    return settings.model_copy(update={"kafka": kafka})


async def test_topics_are_created_idempotently(settings: Settings) -> None:
    topic = unique("spine.topics")
    assert await ensure_topics(settings.kafka, [topic, f"{topic}.dlq"]) == sorted(
        [topic, f"{topic}.dlq"]
    )
    assert await ensure_topics(settings.kafka, [topic]) == []
    admin = AIOKafkaAdminClient(**admin_client_options(settings.kafka))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        assert len(described["partitions"]) == settings.kafka.topic_partitions
    finally:
        await admin.close()


async def test_messages_flow_through_a_real_topic_and_group(settings: Settings) -> None:
    topic = unique("spine.flow")
    collector = Collector(topic)
    settings = settings_for(settings, unique("g"))
    async with running_service(collector.spec("flow"), settings, FLOWS):
        sent = records("flow", 20)
        await produce(settings.kafka, topic, [r.to_bytes() for r in sent])
        await collector.wait_for(20)
    assert sorted(collector.seen) == sorted(r.record_id for r in sent)

    committed = await committed_offsets(
        settings.kafka, f"{settings.kafka.group_prefix}-flow", topic
    )
    assert sum(committed) == 20  # every offset committed, after its handler ran


async def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> list[int]:
    consumer = AIOKafkaConsumer(**admin_client_options(kafka), group_id=group)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        return [await consumer.committed(TopicPartition(topic, p)) or 0 for p in sorted(partitions)]
    finally:
        await consumer.stop()


async def read_dead_letters(kafka: KafkaSettings, topic: str, count: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        f"{topic}.dlq",
        **admin_client_options(kafka),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(letters) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for m in messages:
                    headers = {k: v.decode() for k, v in m.headers}
                    letters.append(DeadLetter.from_headers(m.value or b"", headers))
    finally:
        await consumer.stop()
    return letters


async def test_poison_message_lands_in_dlq_and_consumer_moves_on(settings: Settings) -> None:
    topic = unique("spine.poison")
    collector = Collector(topic)
    settings = settings_for(settings, unique("g"))
    before, after = records("ok", 1), records("ok", 1, start=1)
    exploding = Record(record_id="boom-1", flow="test", instruction="explode")
    async with running_service(collector.spec("poison"), settings, FLOWS):
        await produce(
            settings.kafka,
            topic,
            [
                before[0].to_bytes(),
                b"\x00not json at all",
                exploding.to_bytes(),
                after[0].to_bytes(),
            ],
        )
        await collector.wait_for(2)
        # Partitions are consumed independently: wait for the dead letters before stopping.
        letters = await read_dead_letters(settings.kafka, topic, 2)
    assert sorted(collector.seen) == ["ok-0", "ok-1"]
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == {"ValidationError", "RuntimeError"}
    poison = by_type["ValidationError"]
    assert poison.body == b"\x00not json at all"
    assert poison.attempts == 1
    assert poison.service == "poison"
    assert poison.source_topic == topic
    failed = by_type["RuntimeError"]
    assert failed.error == "RuntimeError: handler exploded on purpose"
    assert failed.attempts == settings.retry.max_attempts
    assert Record.model_validate_json(failed.body) == exploding


async def test_restarted_consumer_resumes_from_committed_offset(settings: Settings) -> None:
    topic = unique("spine.resume")
    settings = settings_for(settings, unique("g"))
    first = Collector(topic)
    async with running_service(first.spec("resume"), settings, FLOWS):
        await produce(settings.kafka, topic, [r.to_bytes() for r in records("a", 5)])
        await first.wait_for(5)
    # Produced while nobody consumes: must not be lost.
    await produce(settings.kafka, topic, [r.to_bytes() for r in records("b", 5)])
    second = Collector(topic)
    async with running_service(second.spec("resume"), settings, FLOWS):
        await second.wait_for(5)
        await asyncio.sleep(1.5)  # anything replayed past the committed offset would show now
    assert sorted(first.seen) == [f"a-{i}" for i in range(5)]
    assert sorted(second.seen) == [f"b-{i}" for i in range(5)]


@pytest.fixture()
def exporter_process(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    log_file = tmp_path / "exporter.log"
    group_prefix = unique("proc")
    env = {
        **os.environ,
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "LOOPLINE_KAFKA__GROUP_PREFIX": group_prefix,
        "LOOPLINE_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "LOOPLINE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "LOOPLINE_FLOWS_FILE": str(REPO / "flows"),
        "LOOPLINE_EXPORT__DIR": str(tmp_path / "exports"),
    }
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "exporter", "--health-port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, port, log_file
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_service_process_reports_healthy_and_drains_on_sigterm(
    settings: Settings, exporter_process: tuple[subprocess.Popen[str], int, Path]
) -> None:
    process, port, log_file = exporter_process
    health: dict[str, object] = {}
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log_file.read_text()
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                if response.status_code == 200:
                    health = response.json()
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    assert health.get("service") == "exporter" and health.get("status") == "ok", health

    record = Record(record_id=unique("proc-rec"), flow="default", instruction="hello")
    completed = CompletedRecord(record=record, dataset="d")
    await produce(settings.kafka, RECORDS_COMPLETED, [completed.to_bytes()])
    # The topic may hold other tests' records (of flows not in flows.yaml: dead-lettered); the
    # exporter counts the records it keeps, and this is the only one of flow "default".
    deadline = time.monotonic() + 45
    async with httpx.AsyncClient() as client:
        while (await client.get(f"http://127.0.0.1:{port}/healthz")).json()["processed"] < 1:
            assert time.monotonic() < deadline, log_file.read_text()
            await asyncio.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(process.wait, timeout=30)
    output = log_file.read_text()
    assert process.returncode == 0, output
    assert "exporter: stopping" in output
    assert "stopped after" in output
    json.dumps(health)  # the health body is plain JSON


async def test_stop_drains_in_flight_work_and_commits_it(settings: Settings) -> None:
    topic = unique("spine.drain")
    settings = settings_for(settings, unique("g"))
    started, finished = asyncio.Event(), []

    async def slow(record: Record, context: ServiceContext) -> None:
        started.set()
        await asyncio.sleep(2)
        finished.append(record.record_id)

    spec = ServiceSpec("drain", (topic,), (), lambda ctx: ctx.consume(topic, Record, slow))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(spec, settings, stop=stop, flows=FLOWS, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    await produce(settings.kafka, topic, [records("slow", 1)[0].to_bytes()])
    await asyncio.wait_for(started.wait(), 30)
    stop.set()  # what SIGTERM does, while the handler is mid-flight
    context = await asyncio.wait_for(task, 30)
    assert finished == ["slow-0"]  # not cancelled: drained
    assert context.stats.processed == 1
    assert (
        sum(await committed_offsets(settings.kafka, f"{settings.kafka.group_prefix}-drain", topic))
        == 1
    )
