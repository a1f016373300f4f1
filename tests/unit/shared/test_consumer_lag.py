"""Consumer lag (shared/consumer_lag.py): per partition, the end offset minus the group's
committed offset, read from outside the group; the monitor keeps the gauge up to date and rides
out a broker it cannot ask."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from shared.consumer_lag import LagMonitor, consumer_lag, partition_lag
from shared.settings import KafkaSettings
from tests.support.metrics import value
from tests.unit.shared.fake_kafka import FakeAdmin, FakeCluster

KAFKA = KafkaSettings(topic_prefix="team-a.")
TOPIC = "team-a.records.generated"


class GroupAdmin(FakeAdmin):
    """The fake cluster's admin client, with one group's committed offsets (and trouble)."""

    def __init__(self, cluster: FakeCluster, committed: dict[TopicPartition, int]) -> None:
        super().__init__(cluster)
        self.committed = committed
        self.asked: list[str] = []
        self.failures = 0

    async def list_consumer_group_offsets(
        self, group_id: str, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        self.asked.append(group_id)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is away")
        return {
            tp: SimpleNamespace(offset=self.committed.get(tp, -1), metadata="")
            for tp in partitions or []
        }


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> GroupAdmin:
    cluster = FakeCluster()
    cluster.create(TOPIC, partitions=2)
    cluster.create("records.generated", partitions=1)  # another set's: not asked about
    for n in range(5):
        cluster.append(TOPIC, b"%d" % n, partition=0)
    for n in range(3):
        cluster.append(TOPIC, b"%d" % n, partition=1)
    cluster.install(monkeypatch, "shared.consumer_lag")
    group = GroupAdmin(cluster, {TopicPartition(TOPIC, 0): 2})
    monkeypatch.setattr("shared.consumer_lag.AIOKafkaAdminClient", lambda **_: group)
    return group


def test_partition_lag() -> None:
    assert partition_lag(3, 0, 10, "earliest") == 7
    assert partition_lag(None, 4, 10, "earliest") == 6  # no commit: from the first offset
    assert partition_lag(-1, 4, 10, "latest") == 0  # no commit: from the end
    assert partition_lag(1, 4, 10, "earliest") == 6  # retention removed what it had not read
    assert partition_lag(12, 0, 10, "earliest") == 0  # an end reported low (Tansu)


async def test_lag_per_partition_of_the_sets_topics(admin: GroupAdmin) -> None:
    lags = await consumer_lag(KAFKA, "loopline-judge", ["records.generated"])
    assert lags == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 3}
    assert admin.asked == ["loopline-judge"]


async def test_the_monitor_sets_the_gauge_and_rides_out_trouble(admin: GroupAdmin) -> None:
    admin.failures = 2
    monitor = LagMonitor("judge", KAFKA, "loopline-judge", ["records.generated"], interval_s=0.01)
    monitor.start()
    try:
        for _ in range(500):
            if len(admin.asked) > 2 and value("loopline_consumer_lag_updated", service="judge"):
                break
            await asyncio.sleep(0.01)
        lag = {
            p: value("loopline_consumer_lag", service="judge", topic=TOPIC, partition=p)
            for p in ("0", "1")
        }
        assert lag == {"0": 3, "1": 3}
        admin.committed[TopicPartition(TOPIC, 1)] = 3  # the group caught up there
        asked = len(admin.asked)
        for _ in range(500):
            if len(admin.asked) >= asked + 2:
                break
            await asyncio.sleep(0.01)
        assert value("loopline_consumer_lag", service="judge", topic=TOPIC, partition="1") == 0
    finally:
        await monitor.stop()
