"""One run of the scale benchmark: N judge replicas on a pre-filled topic, or N replicas and
one more added mid-run (a rebalance).

Each run has its own topic prefix and consumer group on the same broker, so it starts from
empty topics and a new group. The clock starts when the first replica is launched (the
processes' start-up and the group's join are part of the time) and stops at the last record's
judged time (its message timestamp on `records.judged`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from figures import Settling, settling, throughput
from replicas import GroupSetup, Replica, api_key, stopped_at_exit
from topics import JudgedWatcher, prefill

from devstack.scripted_llm import ScriptedLLM
from shared.settings import KafkaSettings


@dataclass(frozen=True)
class Bench:
    """What every run shares: the broker, the endpoint, the flow file, the options."""

    bootstrap: str
    llm: ScriptedLLM
    flows_file: Path
    work_dir: Path
    log_dir: Path
    records: int
    partitions: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    timeout_s: float
    tag: str

    def setup(self, run: str) -> GroupSetup:
        return GroupSetup(
            bootstrap=self.bootstrap,
            topic_prefix=f"scale-{self.tag}-{run}.",
            group_prefix=f"scale-{self.tag}-{run}",
            partitions=self.partitions,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            flows_file=self.flows_file,
            llm_url=self.llm.base_url,
            work_dir=self.work_dir,
            log_dir=self.log_dir,
        )

    def kafka(self, setup: GroupSetup) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            topic_prefix=setup.topic_prefix,
            topic_partitions=self.partitions,
        )


@dataclass
class ScaleRun:
    replicas: int
    records: int
    started: float  # epoch s: the first replica launched
    stamps: list[float]  # every record's judged time, sorted
    partitions: Counter[int]  # records per partition
    processed: list[int]  # per replica, from its /healthz at the end
    cpu_s: float  # all replicas' CPU seconds, from their launch to the last record
    max_in_flight: int  # the most LLM calls the endpoint had at once
    load: str  # load average (1 and 5 min) at the end
    settling: Settling | None = None  # rebalance runs only
    added: float = math.nan  # epoch s: the added replica launched
    first_call: float = math.nan  # s after `added`: its first LLM call arrived
    first_judged: float = math.nan  # s after `added`: its /healthz counted a record
    calls: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # per replica
    # key: LLM calls, the first's and the last's arrival (epoch s)
    ready: list[float] = field(default_factory=list)  # per replica: launch to running, s
    left: dict[int, int] = field(default_factory=dict)  # per partition: records left at `added`

    @property
    def rate(self) -> float:
        """Records/s from the first replica's launch to the last record judged."""
        return throughput(len(self.stamps), self.started, self.stamps[-1])

    @property
    def steady(self) -> float:
        """Records/s from the first record judged to the last."""
        return throughput(len(self.stamps) - 1, self.stamps[0], self.stamps[-1])

    @property
    def first(self) -> float:
        """Seconds from the launch to the first record judged (start-up and join)."""
        return self.stamps[0] - self.started

    @property
    def up(self) -> float:
        """Seconds from the launch until the last of the first replicas ran (the process
        started, its topics checked, its consumer in the group with partitions)."""
        return max(self.ready[: self.replicas], default=math.nan)

    @property
    def busiest_partition(self) -> float:
        return max(self.partitions.values()) / self.records

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.records


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def epoch_of(monotonic: float) -> float:
    return time.time() - time.monotonic() + monotonic


async def _wait_started(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.exited() is not None:
            raise RuntimeError(f"replica {replica.index} exited; see {replica.log_path}")


async def _ready(replica: Replica, stop: asyncio.Event) -> float:
    """Seconds from the replica's launch until it runs: in the group, partitions assigned
    (its log polled every 0.1 s)."""
    while not stop.is_set():
        if replica.running():
            return time.time() - replica.started_at
        await asyncio.sleep(0.1)
    return math.nan


async def _first_record(replica: Replica, stop: asyncio.Event) -> float:
    """Seconds from the replica's launch until its /healthz counts a processed record
    (polled every 0.1 s); nan if `stop` comes first."""
    while not stop.is_set():
        body = await replica.health()
        if body is not None and body.get("processed", 0) > 0:
            return time.time() - replica.started_at
        await asyncio.sleep(0.1)
    return math.nan


async def one_run(bench: Bench, run: str, count: int, add_at: float | None = None) -> ScaleRun:
    """`count` replicas on `bench.records` records; with `add_at`, one more replica is
    launched once that share of the records was judged."""
    setup = bench.setup(run)
    kafka = bench.kafka(setup)
    partitions = await prefill(kafka, run, bench.records)
    watcher = JudgedWatcher(kafka)
    await watcher.start()
    bench.llm.received.clear()
    bench.llm.max_in_flight = 0
    replicas = [Replica(setup, k + 1) for k in range(count)]
    added: Replica | None = None
    stop_polling = asyncio.Event()
    poll: asyncio.Task[float] | None = None
    try:
        async with stopped_at_exit(replicas):
            for replica in replicas:
                replica.start()
            started = replicas[0].started_at
            readies = [asyncio.create_task(_ready(r, stop_polling)) for r in replicas]
            deadline = time.monotonic() + bench.timeout_s
            if add_at is not None:
                wanted = max(1, int(bench.records * add_at))
                while len(watcher.judged) < wanted:
                    await _wait_started(replicas)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(watcher.judged)} of {wanted} judged in time")
                    await asyncio.sleep(0.02)
                added = Replica(setup, count + 1)
                replicas.append(added)
                added.start()
                poll = asyncio.create_task(_first_record(added, stop_polling))
                readies.append(asyncio.create_task(_ready(added, stop_polling)))
            await watcher.wait_for(bench.records, max(1.0, deadline - time.monotonic()))
            processed = [
                int((body or {}).get("processed", -1))
                for body in await asyncio.gather(*(r.health() for r in replicas))
            ]
            cpu_s = sum(r.cpu_s() for r in replicas)
    finally:
        stop_polling.set()
        await watcher.stop()
    calls: dict[str, list[float]] = {}
    for request in bench.llm.received:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        calls.setdefault(key, []).append(epoch_of(request.arrived_at))
    result = ScaleRun(
        replicas=count,
        records=bench.records,
        started=started,
        stamps=watcher.stamps(),
        partitions=partitions,
        processed=processed,
        cpu_s=cpu_s,
        max_in_flight=bench.llm.max_in_flight,
        load=load(),
        calls={key: (len(at), min(at), max(at)) for key, at in sorted(calls.items())},
        ready=list(await asyncio.gather(*readies)),
    )
    if added is not None and poll is not None:
        result.added = added.started_at
        result.first_judged = await poll
        _, first_call, _ = result.calls.get(api_key(added.index), (0, math.nan, math.nan))
        result.first_call = first_call - added.started_at
        result.settling = settling(result.stamps, added.started_at, (count + 1) / count)
        result.left = watcher.left_at(added.started_at, partitions)
    return result
