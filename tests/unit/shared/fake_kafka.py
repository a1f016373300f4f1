"""An in-memory Kafka cluster behind aiokafka's consumer, producer and admin client, as the raw
readers use them (`read_to_end`, the produced index, `loopline dlq`, the demo's stage watcher,
`loopline status` and `trace`, topic creation): topics of partitions of messages, positions,
ends, and groups' committed offsets as an admin client reads them (`committed`). Enough to see
which topics code reads, writes and creates; no group membership, no network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass
class FakeCluster:
    """Topics by name (as on the cluster), each a list of partitions of messages."""

    topics: dict[str, list[list[Message]]] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # in the order they were created
    # Consumer groups' committed offsets: group -> partition -> the next offset to read.
    committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)

    def create(self, name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
        self.topics.setdefault(name, [[] for _ in range(partitions)])
        self.configs[name] = dict(configs or {})

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        partition: int = 0,
        timestamp_ms: int | None = None,
    ) -> Message:
        if topic not in self.topics:
            self.create(topic)
        log = self.topics[topic][partition]
        message = Message(topic, partition, len(log), key, value, tuple(headers))
        if timestamp_ms is not None:
            message = replace(message, timestamp=timestamp_ms)
        log.append(message)
        return message

    def values(self, topic: str) -> list[bytes | None]:
        return [m.value for part in self.topics.get(topic, []) for m in part]

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
        """Replace aiokafka's clients with this cluster's wherever `modules` import them."""
        clients = {
            "AIOKafkaConsumer": lambda *topics, **_: FakeConsumer(self, topics),
            "AIOKafkaProducer": lambda **_: FakeProducer(self),
            "AIOKafkaAdminClient": lambda **_: FakeAdmin(self),
        }
        for module in modules:
            for name, client in clients.items():
                monkeypatch.setattr(f"{module}.{name}", client, raising=False)


class FakeConsumer:
    def __init__(self, cluster: FakeCluster, subscribed: Sequence[str] = ()) -> None:
        self.cluster = cluster
        self.positions: dict[TopicPartition, int] = {}
        for topic in subscribed:
            for p in range(len(cluster.topics.get(topic, []))):
                self.positions[TopicPartition(topic, p)] = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def topics(self) -> set[str]:
        return set(self.cluster.topics)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        found = self.cluster.topics.get(topic)
        return set(range(len(found))) if found is not None else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def _log(self, tp: TopicPartition) -> list[Message]:
        return self.cluster.topics[tp.topic][tp.partition]

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._log(tp)) for tp in partitions}

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def offsets_for_times(
        self, wanted: dict[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        found: dict[TopicPartition, Any] = {}
        for tp, since_ms in wanted.items():
            later = [m for m in self._log(tp) if m.timestamp >= since_ms]
            found[tp] = SimpleNamespace(offset=later[0].offset) if later else None
        return found

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> dict[TopicPartition, list[Message]]:
        batch: dict[TopicPartition, list[Message]] = {}
        for tp in partitions or tuple(self.positions):
            messages = self._log(tp)[self.positions[tp] :]
            if messages:
                batch[tp] = messages
                self.positions[tp] += len(messages)
        if not batch:
            await asyncio.sleep(0.01)
        return batch


class FakeProducer:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
        **_: Any,
    ) -> Message:
        return self.cluster.append(topic, value, key, headers or ())


class FakeAdmin:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_consumer_group_offsets(
        self, group: str, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        """The group's committed offsets (as Kafka: nothing for partitions it never committed)."""
        committed = self.cluster.committed.get(group, {})
        return {
            tp: SimpleNamespace(offset=offset, metadata="")
            for tp, offset in committed.items()
            if partitions is None or tp in partitions
        }

    async def list_topics(self) -> list[str]:
        return list(self.cluster.topics)

    async def create_topics(self, new_topics: list[Any]) -> Any:
        for new in new_topics:
            self.cluster.create(new.name, new.num_partitions, new.topic_configs)
            self.cluster.created.append(new.name)
        return SimpleNamespace(topic_errors=[(new.name, 0, None) for new in new_topics])
