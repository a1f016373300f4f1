"""Consumer lag: how many messages of each partition a consumer group has not committed yet.

Asked of the broker from outside the group (an admin client for the group's committed offsets,
a group-less consumer for the partitions' first and end offsets), so it is known whether the
group's members run or not, and asking never joins the group nor moves its offsets.

`LagMonitor` keeps a service's `loopline_consumer_lag` gauge up to date in the background;
`consumer_lag` asks once (a command, a test).

Some brokers report an end offset below the last batch's end (Tansu: the start of a
multi-record batch plus one, see `shared.topic_reader`): the lag after such a batch reads low by
up to the batch's size until the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.broker import admin_client_options
from shared.metrics import CONSUMER_LAG, CONSUMER_LAG_UPDATED
from shared.settings import KafkaSettings
from shared.topic_reader import partitions_of

log = logging.getLogger("loopline.consumer_lag")

LAG_INTERVAL_S = 10.0


def partition_lag(committed: int | None, first: int, end: int, auto_offset_reset: str) -> int:
    """Messages of one partition after the group's committed offset (`None` or negative: the
    group has not committed there, so it starts where `auto_offset_reset` says)."""
    if committed is None or committed < 0:
        start = first if auto_offset_reset == "earliest" else end
    else:
        start = max(committed, first)  # below the first offset: retention removed the rest
    return max(0, end - start)


class GroupOffsets:
    """The clients that ask the broker about one group's partitions (kept open between asks)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(**admin_client_options(self.kafka))
            consumer = AIOKafkaConsumer(
                **admin_client_options(self.kafka), group_id=None, enable_auto_commit=False
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def lag(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The group's lag on every partition of `topics` (named on the cluster)."""
        admin, consumer = await self._clients()
        partitions = await partitions_of(consumer, topics)
        if not partitions:
            return {}
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        firsts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        reset = self.kafka.auto_offset_reset
        return {
            tp: partition_lag(
                committed[tp].offset if tp in committed else None, firsts[tp], ends[tp], reset
            )
            for tp in partitions
        }

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


async def consumer_lag(
    kafka: KafkaSettings, group: str, topics: Sequence[str]
) -> dict[TopicPartition, int]:
    """The lag of `group` (as on the cluster) on the set's `topics` (logical names), asked once."""
    offsets = GroupOffsets(kafka)
    try:
        return await offsets.lag(group, [kafka.topic(t) for t in topics])
    finally:
        await offsets.close()


class LagMonitor:
    """Refreshes `loopline_consumer_lag{service,topic,partition}` every `interval_s` while the
    service runs. The broker's trouble is logged (once until it passes) and asked again at the
    next refresh; the gauge keeps its last values meanwhile (`loopline_consumer_lag_updated`
    says when they were read)."""

    def __init__(
        self,
        service: str,
        kafka: KafkaSettings,
        group: str,
        topics: Sequence[str],
        interval_s: float = LAG_INTERVAL_S,
        offsets: GroupOffsets | None = None,
    ) -> None:
        self.service = service
        self.group = group
        self.topics = [kafka.topic(t) for t in topics]
        self.interval_s = interval_s
        self.offsets = offsets if offsets is not None else GroupOffsets(kafka)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def refresh(self) -> dict[TopicPartition, int]:
        """Read the lag now and set the gauge; the lag per partition."""
        lags = await self.offsets.lag(self.group, self.topics)
        for tp, lag in lags.items():
            CONSUMER_LAG.labels(
                service=self.service, topic=tp.topic, partition=str(tp.partition)
            ).set(lag)
        CONSUMER_LAG_UPDATED.labels(service=self.service).set(time.time())
        return lags

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
                if self._failing:
                    log.info("%s: consumer lag readable again", self.service)
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("%s: could not read the consumer lag: %s", self.service, exc)
                self._failing = True
                with contextlib.suppress(Exception):
                    await self.offsets.close()  # connect anew next time
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self.topics and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.service} consumer lag"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.offsets.close()
