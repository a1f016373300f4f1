"""Watching one flow's records move through the stages, from the topics (`loopline demo`).

A consumer without a group reads every stage's topic, and its dead-letter topic, from the end
it had when watching began, and counts the flow's records per stage by record id
(`shared.stages`: the stages, and how a message counts): ingested, generated, judged, in
Argilla, answered, completed, and the versions exported. A record that went to a dead-letter
topic is counted as failed at that stage, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from shared.flows import Flow
from shared.settings import KafkaSettings
from shared.stages import (
    STAGES,
    FlowProgress,
    Message,
    StageCount,
    StageCounter,
    TopicFollower,
    counted_topics,
    stage_topics,
    stages_of,
)

__all__ = [
    "STAGES",
    "FlowProgress",
    "StageCount",
    "StageWatcher",
    "stage_topics",
    "stages_of",
    "wait_until",
]


class StageWatcher:
    """Counts a flow's records per stage while it runs (`start`, then read `progress`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        flow_name: str,
        flow: Flow,
        record_ids: set[str] | None = None,
    ) -> None:
        """Counts the flow's records; only `record_ids` when given (a run's own records, not
        an earlier run's that are redelivered or still on their way)."""
        self.kafka = kafka
        self.counter = StageCounter(kafka, {flow_name: flow}, record_ids)
        self.progress: FlowProgress = self.counter.progress[flow_name]
        self._follower = TopicFollower(kafka, counted_topics(), since=None)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin at the current end of every topic: only what happens from now on counts."""
        await self._follower.start()
        await self._follower.catch_up(self.seen)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._follower.stop()

    async def _run(self) -> None:
        while True:
            await self._follower.poll(self.seen)

    def seen(self, message: Message) -> None:
        """Count one message (public for tests)."""
        self.counter.seen(message)


async def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True
