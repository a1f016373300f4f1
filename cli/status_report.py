"""What `loopline status` reports, read from the broker and the services' health endpoints.

`StatusReader` keeps its clients open between reports (`--watch`): the counting of records per
flow goes on from where the last report stopped. A report is one JSON-ready dict (the keys are
documented in `loopline status --help`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.broker import admin_client_options
from shared.consumer_lag import partition_lag
from shared.dead_letter_replay import StoredDeadLetter
from shared.events import DLQ_SUFFIX
from shared.flows import FlowsConfig
from shared.settings import Settings
from shared.stages import (
    PEOPLE_STAGES,
    SERVICE_INPUTS,
    STAGE_NAMES,
    FlowProgress,
    Message,
    StageCounter,
    TopicFollower,
    counted_topics,
    stage_key,
)
from shared.topic_reader import partitions_of

HEALTH_TIMEOUT_S = 2.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A point in time from `24h`, `90m`, `7d`, `3600` (seconds ago) or an ISO date-time (UTC
    unless it says otherwise). Raises ValueError for anything else."""
    now = now or datetime.now(UTC)
    found = _DURATION.fullmatch(value.strip())
    if found:
        return now - timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (24h, 90m, 7d) nor an ISO date-time"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class HealthTarget:
    url: str
    service: str | None = None  # None: learnt from the answer


def health_target(value: str) -> HealthTarget:
    """`URL` or `SERVICE=URL` (a `--health` value)."""
    name, sep, url = value.partition("=")
    if sep and not name.startswith(("http:", "https:")) and name in SERVICE_INPUTS:
        return HealthTarget(url, name)
    return HealthTarget(value)


async def ask_health(client: httpx.AsyncClient, target: HealthTarget) -> dict[str, Any]:
    """A service's /healthz answer as the report shows it (reachable or not, and why)."""
    shown: dict[str, Any] = {"url": target.url, "service": target.service, "reachable": False}
    try:
        answer = await client.get(target.url, timeout=HEALTH_TIMEOUT_S)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {**shown, "error": f"{type(exc).__name__}: {exc}".strip(": ")}
    if not isinstance(body, dict):
        return {**shown, "error": f"not a health answer (HTTP {answer.status_code})"}
    keys = (
        "status",
        "processed",
        "in_flight",
        "waiting_on",
        "last_error",
        "uptime_s",
        "partitions",
    )
    return {
        **shown,
        "service": target.service or body.get("service"),
        "reachable": True,
        **{key: body.get(key) for key in keys},
    }


Offsets = dict[TopicPartition, int]


@dataclass(frozen=True)
class Snapshot:
    """Offsets at one moment: each group's committed ones, every partition's first and end."""

    at: float  # time.monotonic()
    committed: dict[str, dict[TopicPartition, int | None]]  # group -> partition -> offset
    firsts: Offsets
    ends: Offsets  # after the last message (`last_messages`), not only as the broker says
    lasts: dict[TopicPartition, Message]  # each non-empty partition's last message


class StatusReader:
    """Reads status reports of one flow set (`report`), between `start` and `stop`."""

    def __init__(
        self,
        settings: Settings,
        flows: FlowsConfig | None,
        since: datetime,
        health: Sequence[HealthTarget] = (),
        window_s: float = 2.0,
        stuck_after_s: float = 300.0,
        flows_error: str | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.since = since
        self.health = list(health)
        self.window_s = window_s
        self.stuck_after_s = stuck_after_s
        self.flows_error = flows_error
        self.counter = StageCounter(self.kafka, flows.flows if flows else {}, count_unknown=True)
        self.follower = TopicFollower(self.kafka, counted_topics(), since.timestamp())
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(**admin_client_options(self.kafka))
        consumer = AIOKafkaConsumer(
            **admin_client_options(self.kafka), group_id=None, enable_auto_commit=False
        )
        try:
            await admin.start()
            await consumer.start()
            await self.follower.start()
        except BaseException:
            await self.stop(admin, consumer)
            raise
        self._admin, self._consumer = admin, consumer

    async def stop(
        self, admin: AIOKafkaAdminClient | None = None, consumer: AIOKafkaConsumer | None = None
    ) -> None:
        admin, consumer = admin or self._admin, consumer or self._consumer
        self._admin = self._consumer = None
        await self.follower.stop()
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    def group(self, service: str) -> str:
        return f"{self.kafka.group_prefix}-{service}"

    async def _dead_letter_topics(self) -> list[str]:
        assert self._consumer is not None
        found = await self._consumer.topics()
        return sorted(t for t in found if self.kafka.owns(t) and t.endswith(DLQ_SUFFIX))

    async def snapshot(self, dead_letter_topics: Sequence[str]) -> Snapshot:
        admin, consumer = self._admin, self._consumer
        assert admin is not None and consumer is not None
        inputs = {t for topics in SERVICE_INPUTS.values() for t in topics}
        named = [self.kafka.topic(t) for t in sorted(inputs)] + list(dead_letter_topics)
        partitions = await partitions_of(consumer, named)
        firsts = await consumer.beginning_offsets(partitions) if partitions else {}
        ends = await consumer.end_offsets(partitions) if partitions else {}
        lasts = await last_messages(consumer, firsts, ends)
        ends = {
            tp: max(end, lasts[tp].offset + 1 if tp in lasts else end) for tp, end in ends.items()
        }
        committed: dict[str, dict[TopicPartition, int | None]] = {}
        for service, topics in SERVICE_INPUTS.items():
            own = [tp for tp in partitions if self.kafka.logical_topic(tp.topic) in topics]
            if not own:
                continue
            found = await admin.list_consumer_group_offsets(self.group(service), partitions=own)
            committed[self.group(service)] = {
                tp: (found[tp].offset if tp in found and found[tp].offset >= 0 else None)
                for tp in own
            }
        return Snapshot(time.monotonic(), committed, dict(firsts), ends, lasts)

    async def _count_records(self) -> int:
        return await self.follower.catch_up(self.counter.seen)

    async def _health(self) -> list[dict[str, Any]]:
        if not self.health:
            return []
        async with httpx.AsyncClient() as client:
            return list(await asyncio.gather(*(ask_health(client, t) for t in self.health)))

    async def report(self) -> dict[str, Any]:
        """One status report (waits `window_s` at least, to measure throughput)."""
        letters_topics = await self._dead_letter_topics()
        before = await self.snapshot(letters_topics)
        _, counted, health = await asyncio.gather(
            asyncio.sleep(self.window_s), self._count_records(), self._health()
        )
        after = await self.snapshot(letters_topics)
        return {
            "at": datetime.now(UTC).isoformat(),
            "kafka": {
                "bootstrap_servers": self.kafka.bootstrap_servers,
                "topic_prefix": self.kafka.topic_prefix,
                "group_prefix": self.kafka.group_prefix,
            },
            "window_s": round(after.at - before.at, 2),
            "stages": self._stages(before, after, health),
            "health": health,
            "dead_letters": self._dead_letters(after, letters_topics),
            "records": self._records(counted),
        }

    def _stages(
        self, before: Snapshot, after: Snapshot, health: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        elapsed = max(after.at - before.at, 1e-6)
        answers = {h["service"]: h for h in health if h.get("service")}
        rows = []
        for service, topics in SERVICE_INPUTS.items():
            group = self.group(service) if topics else None
            row: dict[str, Any] = {
                "service": service,
                "group": group,
                "topics": [self.kafka.topic(t) for t in topics],
                "lag": None,
                "partitions": [],
                "consumed_per_s": None,
                "produced_per_s": None,
                "health": answers.get(service),
            }
            committed = after.committed.get(group or "", {})
            if committed:
                reset = self.kafka.auto_offset_reset
                earlier = before.committed.get(group or "", {})
                consumed = produced = 0
                for tp, offset in sorted(committed.items()):
                    first, end = after.firsts[tp], after.ends[tp]
                    lag = partition_lag(offset, first, end, reset)
                    row["partitions"].append(
                        {
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "committed": offset,
                            "end": end,
                            "lag": lag,
                        }
                    )
                    then = earlier.get(tp)
                    if offset is not None and then is not None:
                        consumed += max(0, offset - then)
                    produced += max(0, end - before.ends.get(tp, end))
                row["lag"] = sum(p["lag"] for p in row["partitions"])
                row["consumed_per_s"] = round(consumed / elapsed, 2)
                row["produced_per_s"] = round(produced / elapsed, 2)
            rows.append(row)
        return rows

    def _dead_letters(self, after: Snapshot, topics: Sequence[str]) -> list[dict[str, Any]]:
        shown = []
        for topic in topics:
            count = sum(
                max(0, after.ends[tp] - after.firsts[tp]) for tp in after.ends if tp.topic == topic
            )
            last = latest_dead_letter(m for tp, m in after.lasts.items() if tp.topic == topic)
            shown.append(
                {
                    "topic": topic,
                    "messages": count,
                    "latest": None
                    if last is None
                    else {
                        "at": last.at.isoformat(),
                        "error": last.letter.error,
                        "error_type": last.letter.error_type,
                        "service": last.letter.service,
                        "record_id": last.record_id,
                    },
                }
            )
        return shown

    def _records(self, counted: int) -> dict[str, Any]:
        now = time.time()
        unknown = self.counter.unknown or {}
        return {
            "since": self.since.isoformat(),
            "stuck_after_s": self.stuck_after_s,
            "messages_read": self.follower.read,
            "messages_counted": counted,
            "error": self.flows_error,
            "flows": [
                flow_report(progress, now, self.stuck_after_s)
                for progress in self.counter.progress.values()
            ],
            "unknown_flows": {name: len(ids) for name, ids in sorted(unknown.items())},
        }


def flow_report(progress: FlowProgress, now: float, stuck_after_s: float) -> dict[str, Any]:
    """One flow's records per stage (a stage the flow does not use: null)."""
    positions = progress.positions(now, stuck_after_s)
    stages: dict[str, Any] = {}
    for name in STAGE_NAMES:
        at = positions.get(name)
        stages[stage_key(name)] = (
            None
            if at is None
            else {"reached": at.reached, "at": at.at, "stuck": at.stuck, "failed": at.failed}
        )
    stuck = {stage_key(n): p.stuck for n, p in positions.items() if p.stuck}
    return {
        "flow": progress.flow_name,
        "stages": stages,
        "exported": {
            fmt: {
                "version": version,
                "rows": rows,
                "at": datetime.fromtimestamp(progress.exported_at[fmt], UTC).isoformat(),
            }
            for fmt, (version, rows) in sorted(progress.exported.items())
        },
        "auto_accepted": len(progress.auto_accepted),
        "failed": sum(p.failed for p in positions.values()),
        "stuck": sum(stuck.values()),
        "stuck_waiting_on_people": sum(p.stuck for n, p in positions.items() if n in PEOPLE_STAGES),
    }


def latest_dead_letter(messages: Iterable[Message]) -> StoredDeadLetter | None:
    """The newest of `messages` that is a Loopline dead letter."""
    letters = [d for d in map(StoredDeadLetter.from_message, messages) if d is not None]
    return max(letters, key=lambda d: d.at, default=None)


async def last_messages(
    consumer: AIOKafkaConsumer, firsts: Offsets, ends: Offsets, timeout_s: float = 10.0
) -> dict[TopicPartition, Message]:
    """The last message of each non-empty partition, read from the end the broker reports.
    Some brokers report an end below the last batch (Tansu: the start of a multi-record batch
    plus one), so reading goes on until a fetch past that end brings nothing more; the last
    message read is the partition's last. Within `timeout_s`: what was read by then."""
    todo = [tp for tp, end in ends.items() if end > firsts.get(tp, 0)]
    lasts: dict[TopicPartition, Message] = {}
    if not todo:
        return lasts
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, ends[tp] - 1)
    remaining = set(todo)
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        batch = await consumer.getmany(*remaining, timeout_ms=200)
        for tp, messages in batch.items():
            if messages:
                lasts[tp] = messages[-1]
        for tp in list(remaining):
            if not batch.get(tp) and await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return lasts
