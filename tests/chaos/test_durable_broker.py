"""The durable broker keeps what it acknowledged: several producers writing the same partitions
at once (as the ingester, generator and judge do: many records in flight), every acknowledged
message is read back at its offset, no offset given to two messages."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import devstack as stack

PRODUCERS = 6
SECONDS = 6.0
PARTITIONS = 2

Acked = dict[int, list[tuple[int, bytes]]]  # partition -> (offset, value) as acknowledged


async def produce(bootstrap: str, topic: str, name: int, acked: Acked, until: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        i = 0
        while time.monotonic() < until:
            value = f"producer {name} message {i}".encode()
            sent = await producer.send_and_wait(topic, value, partition=i % PARTITIONS)
            acked[sent.partition].append((sent.offset, value))
            i += 1
    finally:
        await producer.stop()


async def read_back(
    bootstrap: str, topic: str, wanted: dict[int, int]
) -> tuple[dict[int, dict[int, bytes]], dict[int, int]]:
    """Every message of each partition up to offset `wanted[p]` (exclusive: one past the highest
    acknowledged), and the end offsets the broker reported before reading.

    Reading goes on to `wanted`, not to the reported end: a broker whose end offset lags behind
    what it acknowledged has not lost the messages past it, as long as they can be read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        found: dict[int, dict[int, bytes]] = {p: {} for p in range(PARTITIONS)}
        left = {tp for tp in partitions if wanted[tp.partition] > 0}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                found[tp.partition].update((m.offset, m.value or b"") for m in messages)
                if messages and messages[-1].offset + 1 >= wanted[tp.partition]:
                    left.discard(tp)
        return found, {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def test_acknowledged_messages_stay(
    chaos_stack: stack.StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = chaos_stack.kafka_bootstrap
    topic = f"chaos.acks.{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    acked: Acked = {p: [] for p in range(PARTITIONS)}
    until = time.monotonic() + SECONDS
    await asyncio.gather(*(produce(bootstrap, topic, k, acked, until) for k in range(PRODUCERS)))
    wanted = {p: max((o for o, _ in v), default=-1) + 1 for p, v in acked.items()}
    found, ends = await read_back(bootstrap, topic, wanted)
    total = sum(len(values) for values in acked.values())
    shared = sum(len(v) - len({offset for offset, _ in v}) for v in acked.values())
    gone = [
        (p, o) for p, values in acked.items() for o, value in values if found[p].get(o) != value
    ]
    with capsys.disabled():
        print(
            f"\n{chaos_stack.kafka_mode} broker, {PRODUCERS} producers: {total} messages "
            f"acknowledged, {shared} given an offset already given, {len(gone)} not read back "
            f"at their offset (end offsets {ends} when reading began; highest acknowledged + 1: "
            f"{wanted})"
        )
    assert shared == 0, f"{shared} of {total} acknowledged messages share an offset"
    assert not gone, f"{len(gone)} of {total} acknowledged messages are gone: {gone[:10]}"
