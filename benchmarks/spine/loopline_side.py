"""Loopline's side of the spine benchmark: ingester, generator, judge and exporter, each as
its own process (`python -m cli run <service>`), on one broker and one instant endpoint.

Records go in over the ingester's HTTP API (batches of `batch`, `concurrency` requests at
once); a record is done when the first `dpo` version holding it is announced on
`datasets.exported` (its rows' `record_id` column read from the version's Parquet files).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer
from children import Child, stop_all
from topics import TopicRead, create_spine, read_spine

from devstack.testing import free_port
from services.exporter.reading import version_files
from shared.broker import admin_client_options
from shared.events import DATASETS_EXPORTED, DatasetExported
from shared.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[2]
FLOW = "spine"
SERVICES = ("ingester", "generator", "judge", "exporter")


def flow_file(every_records: int, every_s: float) -> str:
    """Two generations (one per model), the multi-aspect judge, `dpo` versions; no people."""
    return f"""flows:
  {FLOW}:
    description: the spine benchmark's flow
    generate:
      - {{plugin: openai, options: {{model: model-a, max_tokens: 128}}}}
      - {{plugin: openai, options: {{model: model-b, max_tokens: 128}}}}
    judge: {{plugin: multi-aspect, max_tokens: 900}}
    export:
      formats: [{{plugin: dpo}}]
      every_records: {every_records}
      every_s: {every_s}
"""


@dataclass(frozen=True)
class Pace:
    """Records offered at `rate` per second, `batch` at a time (the ingest requests' size)."""

    rate: float
    batch: int

    async def wait(self, started: float, index: int) -> None:
        """Until record `index` (counted from `started`, time.monotonic()) is due: its batch's
        first record's time."""
        due = started + (index - index % self.batch) / self.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))


@dataclass(frozen=True)
class SideSetup:
    bootstrap: str
    llm_url: str
    flows_file: Path
    work_dir: Path
    partitions: int
    telemetry: bool
    batch: int
    concurrency: int
    pace: Pace | None = None  # None: every record at once
    profile: Path | None = None  # run each service under cProfile, its profile written here


def profiled(setup: SideSetup, run: str, service: str) -> list[str]:
    """The interpreter's arguments that run a service under cProfile, when asked."""
    if setup.profile is None:
        return []
    return ["-m", "cProfile", "-o", str(setup.profile / f"{run}-{service}.prof")]


def payload(run: str, name: str) -> dict[str, Any]:
    return {
        "record_id": f"{run}-{name}",
        "flow": FLOW,
        "instruction": f"Write a Python function that returns the {name}th triangular number, "
        "with a docstring and one example.",
        "metadata": {"bench": "spine"},
    }


class ExportWatcher:
    """Each record's first `dpo` version: the announcement's timestamp (epoch s)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.done: dict[str, float] = {}
        self.versions = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            self.kafka.topic(DATASETS_EXPORTED),
            **admin_client_options(self.kafka),
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                for messages in (await consumer.getmany(timeout_ms=100)).values():
                    for message in messages:
                        event = DatasetExported.model_validate_json(message.value or b"")
                        if event.flow == FLOW:
                            ids = await asyncio.to_thread(record_ids, Path(event.location))
                            self.versions += 1
                            for record_id in ids:
                                self.done.setdefault(record_id, message.timestamp / 1000)
        finally:
            await consumer.stop()

    async def wait_for(self, keys: set[str], timeout_s: float, children: list[Child]) -> None:
        deadline = time.monotonic() + timeout_s
        while not keys <= self.done.keys():
            for child in children:
                child.check()
            if self._task is not None and self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                missing = len(keys - self.done.keys())
                raise TimeoutError(f"{missing} of {len(keys)} records not exported in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def record_ids(location: Path) -> list[str]:
    """The record ids of a version's rows, every split (the Parquet files its manifest lists)."""
    ids: list[str] = []
    for shards in version_files(location).values():
        for shard in shards:
            ids.extend(pq.read_table(shard, columns=["record_id"]).column(0).to_pylist())
    return ids


def service_env(setup: SideSetup, kafka: KafkaSettings, run_dir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPLINE_", "OTEL_"))}
    return {
        **inherited,
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": setup.bootstrap,
        "LOOPLINE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "LOOPLINE_KAFKA__GROUP_PREFIX": kafka.topic_prefix.rstrip("."),
        "LOOPLINE_KAFKA__TOPIC_PARTITIONS": str(setup.partitions),
        "LOOPLINE_FLOWS_FILE": str(setup.flows_file),
        "LOOPLINE_LLM__BASE_URL": setup.llm_url,
        "LOOPLINE_STACK_DIR": str(run_dir / "state"),
        "LOOPLINE_EXPORT__DIR": str(run_dir / "exports"),
        "LOOPLINE_EXPORT__CHECK_INTERVAL_S": "0.5",
        "LOOPLINE_INGEST__DEFAULT_FLOW": FLOW,
        **({} if setup.telemetry else {"LOOPLINE_TELEMETRY__ENABLED": "false"}),
    }


async def wait_running(child: Child, timeout_s: float = 120) -> None:
    """Until the service's log says it runs (`<service>: running (`): its topics exist, its
    consumers have partitions, its HTTP API (the ingester's) answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child.check()
        if f"{child.name}: running (" in child.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{child.name} not running in {timeout_s} s; see {child.log_path}")


async def ingest(
    url: str, run: str, names: list[str], setup: SideSetup
) -> dict[str, tuple[float, float]]:
    """Every record over HTTP (as `setup.pace` has them due, if it is set); per record id, its
    request's start and answer (epoch s)."""
    batches = [(k, names[k : k + setup.batch]) for k in range(0, len(names), setup.batch)]
    times: dict[str, tuple[float, float]] = {}
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        while batches:
            first, names_in_batch = batches.pop(0)
            if setup.pace is not None:
                await setup.pace.wait(started, first)
            batch = [payload(run, name) for name in names_in_batch]
            sent = time.time()
            answer = await client.post("/v1/records", json=batch)
            answer.raise_for_status()
            if len(answer.json()["accepted"]) != len(batch):
                raise RuntimeError(f"the ingester refused some of {len(batch)} records")
            answered = time.time()
            times.update({p["record_id"]: (sent, answered) for p in batch})

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(setup.concurrency)))
    return times


@dataclass
class SideRun:
    handed: dict[str, tuple[float, float]]  # record id -> (handed over, accepted)
    topics: list[TopicRead]  # the spine's three topics, read back
    done: dict[str, float]  # record id -> in a version (Loopline) or consumed (anchor)
    cpu_ms: dict[str, float]  # process -> CPU ms per record while the records went through
    notes: list[str]


async def run_loopline(
    setup: SideSetup,
    run: str,
    records: int,
    warm: int,
    timeout_s: float,
    cpu_of: Mapping[str, Callable[[], float]],
) -> SideRun:
    """One run of the four services on `records` new records (after `warm` untimed ones)."""
    kafka = KafkaSettings(
        bootstrap_servers=setup.bootstrap,
        topic_prefix=f"{run}.",
        topic_partitions=setup.partitions,
    )
    await create_spine(kafka)
    run_dir = setup.work_dir / run
    run_dir.mkdir(parents=True)
    env = service_env(setup, kafka, run_dir)
    ingest_port = free_port()
    health_ports = {name: free_port() for name in SERVICES}
    children: list[Child] = []
    watcher = ExportWatcher(kafka)
    try:
        for name, port in health_ports.items():
            extra = {"LOOPLINE_HEALTH_PORT": str(port), "LOOPLINE_INGEST__PORT": str(ingest_port)}
            children.append(
                Child(
                    name,
                    [sys.executable, *profiled(setup, run, name), "-m", "cli", "run", name],
                    {**env, **extra},
                    run_dir / f"{name}.log",
                    REPO,
                )
            )
        for child in children:
            await wait_running(child)
        await watcher.start()
        url = f"http://127.0.0.1:{ingest_port}"
        warm_names = [f"warm-{i:03d}" for i in range(warm)]
        await ingest(url, run, warm_names, dataclasses.replace(setup, pace=None))
        await watcher.wait_for({f"{run}-{n}" for n in warm_names}, timeout_s, children)
        names = [f"{i:06d}" for i in range(records)]
        before = {c.name: c.cpu_s() for c in children} | {k: f() for k, f in cpu_of.items()}
        handed = await ingest(url, run, names, setup)
        await watcher.wait_for(set(handed), timeout_s, children)
        after = {c.name: c.cpu_s() for c in children} | {k: f() for k, f in cpu_of.items()}
        versions = watcher.versions
    finally:
        await watcher.stop()
        await stop_all(children)
    return SideRun(
        handed=handed,
        topics=await read_spine(kafka),
        done={key: watcher.done[key] for key in handed},
        cpu_ms={k: (after[k] - before[k]) * 1000 / records for k in after},
        notes=[f"{versions} dpo versions (warm-up included)"],
    )
