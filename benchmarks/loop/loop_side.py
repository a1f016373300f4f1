"""Loopline's side of the loop benchmark: the six services on the real stack, bots, exports.

The six services run in this process (one event loop, as `run_service` runs each), with the
scripted LLM endpoint and the bot annotators beside them. Records go in over the ingester's
HTTP API; the benchmark watches `datasets.exported` and reads each new `dpo` version's rows
(`record_id` is a column) to find the first version holding each record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import yaml
from aiokafka import AIOKafkaConsumer
from argilla_jobs import drain
from bots import BotClock, Marks, TimedTransport, bots
from cpu import CpuMeter, CpuUse
from telemetry_modes import SinkStats, exporter_cpu_s

from devstack.stage_watch import StageWatcher
from devstack.testing import free_port
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.exporter.app import SERVICE as EXPORTER
from services.exporter.reading import version_files
from services.feedback_collector.app import SERVICE as COLLECTOR
from services.generator.app import SERVICE as GENERATOR
from services.ingester.app import SERVICE as INGESTER
from services.judge.app import SERVICE as JUDGE
from shared.broker import admin_client_options
from shared.events import DATASETS_EXPORTED, RECORDS_JUDGED, DatasetExported, Record
from shared.flows import FlowsConfig, parse_flows
from shared.service import ServiceSpec, run_service
from shared.settings import (
    ArgillaSettings,
    ExportSettings,
    FeedbackSettings,
    IngestSettings,
    KafkaSettings,
    LLMSettings,
    Settings,
    TelemetrySettings,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED_FLOW = REPO / "flows" / "generations-to-argilla.yaml"
SERVICES: tuple[ServiceSpec, ...] = (INGESTER, GENERATOR, JUDGE, PUBLISHER, COLLECTOR, EXPORTER)
FORMAT = "dpo"


@dataclass(frozen=True)
class LoopOptions:
    records: int
    every_records: int  # the flow's export triggers
    every_s: float
    batch: int  # records per ingest request
    rate: float  # records/s offered to the ingester; 0: all at once
    bot_rate: float | None  # answers/s of the bots together (bulks of that size); None: 100
    reconcile_s: float  # the collector's reconciliation interval
    timeout_s: float


# stage -> seconds after the first ingest until it held its first record, half, all of them
Stages = dict[str, tuple[float, float, float]]


@dataclass
class LoopResult:
    records: int
    seconds: float  # first ingest request to the last record's first version
    latencies: list[float]  # per record: its ingest request to its first version
    versions: list[Version]  # dpo versions written during the run (times after t0)
    stages: Stages = field(default_factory=dict)
    bots: str = ""
    backlog: tuple[int, float] = (0, 0.0)  # Argilla worker jobs left at the end, s to drain
    cpu: CpuUse | None = None  # from the first ingest to the last record's version
    mode: str = "on"  # telemetry on or off
    sink: SinkStats | None = None  # what the services exported (on), their stop included
    log_lines: int = 0  # the services' JSON log lines during the run
    exporter_cpu_s: float = 0.0  # of `cpu`'s, the span exporters' threads'

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        """The q-th percentile of the latencies (nearest rank)."""
        ordered = sorted(self.latencies)
        return ordered[max(0, min(len(ordered) - 1, -(-q * len(ordered) // 100) - 1))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)


def loop_flow(name: str, options: LoopOptions) -> FlowsConfig:
    """The shipped `generations-to-argilla` flow under `name`, exporting as often as asked."""
    body: dict[str, Any] = yaml.safe_load(SHIPPED_FLOW.read_text())
    body.pop("sample", None)
    body["export"] = {
        **body["export"],
        "every_records": options.every_records,
        "every_s": options.every_s,
    }
    return parse_flows({"flows": {name: body}}, str(SHIPPED_FLOW))


@dataclass(frozen=True)
class Endpoints:
    """Where the run's services find the stack, and the ports they serve on (the collector's
    is kept across runs: Argilla keeps one webhook for it)."""

    kafka: str
    argilla: ArgillaSettings
    llm_url: str
    feedback_port: int
    group_prefix: str
    redis: tuple[str, int]  # Argilla's job queues (the stack's Redis stand-in)


def loop_settings(
    endpoints: Endpoints, export_dir: Path, reconcile_s: float, telemetry: TelemetrySettings
) -> Settings:
    port = endpoints.feedback_port
    return Settings(
        telemetry=telemetry,
        stack_dir=export_dir.parent,
        llm=LLMSettings(base_url=endpoints.llm_url, model="scripted-judge"),
        kafka=KafkaSettings(
            bootstrap_servers=endpoints.kafka,
            topic_partitions=2,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            group_prefix=endpoints.group_prefix,
        ),
        argilla=endpoints.argilla,
        feedback=FeedbackSettings(
            port=port,
            public_url=f"http://127.0.0.1:{port}/argilla/webhooks",
            reconcile_interval_s=reconcile_s,
        ),
        ingest=IngestSettings(port=free_port(), max_batch=1000),
        export=ExportSettings(dir=export_dir, check_interval_s=0.5),
    )


@contextlib.asynccontextmanager
async def six_services(settings: Settings, flows: FlowsConfig) -> AsyncIterator[None]:
    """All six services in this event loop, each consuming; stopped (drained) on exit."""
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in SERVICES]
    tasks = [
        asyncio.create_task(run_service(spec, settings, stop=stop, flows=flows, ready=ready))
        for spec, ready in zip(SERVICES, readies, strict=True)
    ]
    try:
        deadline = time.monotonic() + 90
        while not all(ready.is_set() for ready in readies):
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()  # raises the service's error
                raise RuntimeError("a service stopped during start-up")
            if time.monotonic() > deadline:
                late = [s.name for s, r in zip(SERVICES, readies, strict=True) if not r.is_set()]
                raise RuntimeError(f"not ready within 90 s: {', '.join(late)}")
            await asyncio.sleep(0.1)
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class Version:
    """A `dpo` version as the benchmark saw it (times: time.monotonic())."""

    number: int
    rows: int
    new: int  # rows of records no earlier version held
    seen_at: float  # its `datasets.exported` event read
    exported_at: float  # the event's own timestamp, on the same clock


class ExportWatcher:
    """Each record's first `dpo` version: from `datasets.exported`, reading the version's rows."""

    def __init__(self, kafka: KafkaSettings, flow: str) -> None:
        self.kafka = kafka
        self.flow = flow
        self.first_seen: dict[str, float] = {}  # record id -> time.monotonic()
        self.versions: list[Version] = []
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
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    for message in messages:
                        await self._seen(DatasetExported.model_validate_json(message.value or b""))
        finally:
            await consumer.stop()

    async def _seen(self, event: DatasetExported) -> None:
        if event.flow != self.flow or event.format != FORMAT:
            return
        arrived = time.monotonic()
        ids = await asyncio.to_thread(version_record_ids, Path(event.location))
        new = [record_id for record_id in ids if record_id not in self.first_seen]
        for record_id in new:
            self.first_seen[record_id] = arrived
        lag = event.exported_at.timestamp() - time.time() + arrived
        self.versions.append(Version(event.version, len(ids), len(new), arrived, lag))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def version_record_ids(location: Path) -> list[str]:
    """The record ids of a version's rows, every split (the shards its manifest lists)."""
    ids: list[str] = []
    for shards in version_files(location).values():
        for shard in shards:
            ids.extend(pq.read_table(shard, columns=["record_id"]).column(0).to_pylist())
    return ids


def ingest_payload(flow: str, run: str, i: int) -> dict[str, Any]:
    return {
        "record_id": f"{run}-{i:05d}",
        "flow": flow,
        "instruction": f"Write a Python function that returns the {i}th triangular number, "
        "with a docstring and one example.",
        "metadata": {"bench": "loop", "n": i},
    }


async def ingest(url: str, flow: str, run: str, options: LoopOptions) -> dict[str, float]:
    """Every record over the ingester's HTTP API; when each record's request was sent."""
    sent: dict[str, float] = {}
    payloads = [ingest_payload(flow, run, i) for i in range(options.records)]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for start in range(0, len(payloads), options.batch):
            batch = payloads[start : start + options.batch]
            if options.rate > 0:
                due = started + start / options.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            answer = await client.post("/v1/records", json=batch)
            answer.raise_for_status()
            accepted = answer.json()["accepted"]
            if len(accepted) != len(batch):
                raise RuntimeError(f"the ingester accepted {len(accepted)} of {len(batch)}")
            sent.update({p["record_id"]: now for p in batch})
    return sent


async def stage_times(watcher: StageWatcher, wanted: int, t0: float, into: Stages) -> None:
    """When each stage held its first record, half of them and all (seconds after t0),
    sampled every 0.2 s."""
    marks: dict[str, Marks] = {}
    while True:
        now = time.monotonic() - t0
        for name, counted in watcher.progress.stages.items():
            reached = marks.setdefault(name, Marks(wanted))
            reached.update(len(counted.records), now)
            if reached.times is not None:
                into[name] = reached.times
        await asyncio.sleep(0.2)


async def run_loop(
    endpoints: Endpoints,
    workdir: Path,
    run: str,
    options: LoopOptions,
    meter: CpuMeter,
    telemetry: TelemetrySettings,
) -> LoopResult:
    """One run of the whole loop on `options.records` new records (flow `loop-<run>`)."""
    flow_name = f"loop-{run}"
    flows = loop_flow(flow_name, options)
    flow = flows.flows[flow_name]
    settings = loop_settings(endpoints, workdir / run / "exports", options.reconcile_s, telemetry)
    async with six_services(settings, flows):
        stages = StageWatcher(settings.kafka, flow_name, flow)
        await stages.start()
        exports = ExportWatcher(settings.kafka, flow_name)
        await exports.start()
        # The bots' accounts first (no dataset yet: the run stops at once), then the bots
        # themselves, answering as records arrive in Argilla.
        await bots(settings.argilla, flow_name, flow, idle_timeout_s=0)
        answers = BotClock(options.records)
        timed = TimedTransport()
        report_task = asyncio.create_task(
            bots(
                settings.argilla,
                flow_name,
                flow,
                options.timeout_s,
                options.bot_rate,
                answers,
                timed,
            )
        )
        reached: Stages = {}
        url = f"http://127.0.0.1:{settings.ingest.port}"
        t0 = answers.t0 = time.monotonic()
        cpu_before, exporters_before = meter.snapshot(t0), exporter_cpu_s()
        sampler = asyncio.create_task(stage_times(stages, options.records, t0, reached))
        sent = await ingest(url, flow_name, run, options)
        deadline = time.monotonic() + options.timeout_s
        while len(exports.first_seen.keys() & sent.keys()) < len(sent):
            if time.monotonic() > deadline:
                break
            if report_task.done():
                report_task.result()  # the bots failed: raise why
            await asyncio.sleep(0.1)
        cpu = meter.use(cpu_before, meter.snapshot(time.monotonic()))
        exporters = exporter_cpu_s() - exporters_before
        answered = answers.marks.times
        bot_stage = {"bots answered": answered} if answered is not None else {}
        for task in (sampler, report_task):
            task.cancel()
        await asyncio.gather(sampler, report_task, return_exceptions=True)
        # The webhook deliveries still queued (the reconciliation did their work), delivered
        # before the collector stops: undelivered ones would retry for minutes.
        backlog = await drain(*endpoints.redis)
        await exports.stop()
        await stages.stop()
    firsts = {rid: exports.first_seen[rid] for rid in sent if rid in exports.first_seen}
    if len(firsts) < len(sent):
        done = {name: len(c.records) for name, c in stages.progress.stages.items()}
        raise RuntimeError(
            f"only {len(firsts)} of {len(sent)} records reached a {FORMAT} version within "
            f"{options.timeout_s:.0f} s (stages: {done}, failed: {stages.progress.failed()})"
        )
    return LoopResult(
        records=len(sent),
        seconds=max(firsts.values()) - t0,
        latencies=[firsts[rid] - sent[rid] for rid in sent],
        versions=[
            dataclasses.replace(v, seen_at=v.seen_at - t0, exported_at=v.exported_at - t0)
            for v in exports.versions
        ],
        stages={**reached, **bot_stage},
        bots=f"{answers.report.line() if answers.report else ''}; Argilla calls: {timed.line()}",
        backlog=backlog,
        cpu=cpu,
        exporter_cpu_s=exporters,
    )


async def judged_records(kafka: KafkaSettings, flow: str, wanted: int) -> list[Record]:
    """The flow's judged records, as they are on `records.judged` (the anchor's input)."""
    consumer = AIOKafkaConsumer(
        kafka.topic(RECORDS_JUDGED),
        **admin_client_options(kafka),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: dict[str, Record] = {}
    try:
        deadline = time.monotonic() + 60
        while len(found) < wanted and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                for message in messages:
                    record = Record.model_validate_json(message.value or b"")
                    if record.flow == flow:
                        found[record.record_id] = record
    finally:
        await consumer.stop()
    return [found[k] for k in sorted(found)]
