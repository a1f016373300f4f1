"""Ingest benchmark: records/s accepted over HTTP (batches of 100) vs raw aiokafka, and what
telemetry costs.

Starts a real Tansu broker (in-memory) from the local stack, then, side by side on the same
broker and records of the same shape:
  1. anchor: raw aiokafka producing the records' JSON (keyed by record id, acks=all);
  2. Loopline: the ingester as its own process, concurrent HTTP clients POSTing batches of 100
     to /v1/records for `--seconds`.
With `--telemetry both` (the default) Loopline runs `--runs` times with telemetry on and as
often with it off, alternating (a fresh ingester each run, new records each run); medians are
compared. On is production's: spans recorded and exported over OTLP/HTTP (to `otlp_sink.py`, a
minimal receiver in its own process that answers 200 and counts requests, bytes and spans),
the broker's metrics middlewares, JSON logs at INFO. Off: LOOPLINE_TELEMETRY__ENABLED=false,
the same logs. `--telemetry all` adds `local` (spans and metrics made, nothing exported) and
`sampled` (on, with the SDK's `parentbased_traceidratio` sampler keeping one record's trace in
ten). Prints records/s, request p50/p99, the ingester's CPU per record, and what reached the
sink. `--profile DIR` runs each ingester under cProfile. Every process it starts is stopped by
pid.

    python benchmarks/ingest/run.py [--seconds 20] [--concurrency 8] [--runs 3]
                                    [--telemetry both|all|on|off|local|sampled]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from otlp_sink import OtlpSink, SinkStats

import devstack as stack
from devstack.testing import config_for_tests, free_port

REPO = Path(__file__).resolve().parents[2]
BATCH = 100


def make_batches(count: int, run: str) -> list[list[dict[str, object]]]:
    """Distinct, realistic records (dedup must not make the benchmark easier)."""
    return [
        [
            {
                "flow": "bench",
                "instruction": f"How do I paginate results in a REST API? ({run} {b}-{i})",
                "responses": [
                    {
                        "text": "Use cursor-based pagination: return a `next` token with each page "
                        "and accept it as a query parameter on the next request.",
                        "model": "app-model",
                        "source": "app",
                    }
                ],
                "metadata": {"app": "docs-bot", "user_tier": "pro", "latency_ms": 812},
                "tags": ["prod", "api"],
            }
            for i in range(BATCH)
        ]
        for b in range(count)
    ]


async def anchor(bootstrap: str, batches: list[list[dict[str, object]]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    payloads = [
        (str(uuid.uuid4()).encode(), json.dumps(record).encode())
        for batch in batches
        for record in batch
    ]
    started = time.perf_counter()
    futures = [await producer.send("bench.anchor", value, key=key) for key, value in payloads]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return len(payloads) / elapsed


async def loopline(
    url: str, batches: list[list[dict[str, object]]], concurrency: int, seconds: float
) -> tuple[float, list[float], int]:
    bodies = [json.dumps(batch).encode() for batch in batches]
    latencies: list[float] = []
    accepted = 0
    next_body = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted, next_body
        while time.perf_counter() < deadline and next_body < len(bodies):
            body = bodies[next_body]
            next_body += 1
            sent = time.perf_counter()
            response = await client.post(
                url, content=body, headers={"content-type": "application/json"}
            )
            latencies.append(time.perf_counter() - sent)
            response.raise_for_status()
            accepted += len(response.json()["accepted"])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return accepted / elapsed, latencies, accepted


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("ingester exited during start-up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("ingester not ready in time")


def cpu_s(pid: int) -> tuple[float, float]:
    """A process's CPU seconds so far (user + system): its main thread's (the event loop) and
    its other threads' (the span exporter's, when it has one)."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            parts = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        used = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        if task.name == str(pid):
            main += used
        else:
            others += used
    return main, others


@dataclass(frozen=True)
class Run:
    """One ingester's load with telemetry on or off."""

    mode: str
    rate: float
    accepted: int
    latencies: list[float]
    cpu_s: float  # the ingester's CPU seconds during the load
    others_s: float  # of which its threads but the main one (the span exporter's)
    sink: SinkStats  # what reached the OTLP sink from the load's start to the ingester's stop
    log_lines: int  # the ingester's log lines, start to stop
    metrics: bool  # FastStream's metrics on the ingester's /metrics

    @property
    def cpu_us(self) -> float:
        """The ingester's CPU microseconds per accepted record."""
        return self.cpu_s / self.accepted * 1e6 if self.accepted else float("nan")

    @property
    def others_us(self) -> float:
        """Of which its other threads'."""
        return self.others_s / self.accepted * 1e6 if self.accepted else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, int(len(ordered) * q) - 1)] * 1000


def ingester_env(
    config: stack.StackConfig, flows: Path, mode: str, sink: OtlpSink
) -> dict[str, str]:
    """The ingester's environment: production's telemetry (on) or none (off), JSON logs."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("LOOPLINE_TELEMETRY__", "OTEL_"))
    }
    telemetry = {
        "on": {"LOOPLINE_TELEMETRY__OTLP_ENDPOINT": sink.endpoint},
        "local": {},  # spans made (and dropped: no exporter) and metrics, nothing exported
        # on, with a trace kept for one record in ten (the SDK's sampler from the environment)
        "sampled": {
            "LOOPLINE_TELEMETRY__OTLP_ENDPOINT": sink.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        "off": {"LOOPLINE_TELEMETRY__ENABLED": "false"},
    }[mode]
    return {
        **inherited,
        **telemetry,
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": config.kafka_bootstrap,
        "LOOPLINE_FLOWS_FILE": str(flows),
        "LOOPLINE_INGEST__DEFAULT_FLOW": "bench",
        "LOOPLINE_LOG_FORMAT": "json",
    }


def one_run(
    config: stack.StackConfig, flows: Path, mode: str, sink: OtlpSink, args: argparse.Namespace
) -> Run:
    port, health = free_port(), free_port()
    env = {
        **ingester_env(config, flows, mode, sink),
        "LOOPLINE_INGEST__PORT": str(port),
        "LOOPLINE_HEALTH_PORT": str(health),
    }
    log_file = flows.parent / f"ingester-{mode}-{uuid.uuid4().hex[:6]}.log"
    url = f"http://127.0.0.1:{port}/v1/records"
    run = uuid.uuid4().hex[:6]
    batches = make_batches(args.batches, run)
    with log_file.open("wb") as log:
        ingester = subprocess.Popen(
            [
                sys.executable,
                *(
                    ["-m", "cProfile", "-o", f"{args.profile}/ingester-{mode}-{run}.prof"]
                    if args.profile
                    else []
                ),
                "-m",
                "cli",
                "run",
                "ingester",
                "--log-level",
                "INFO",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", ingester)
            asyncio.run(loopline(url, make_batches(20, f"warm-{run}"), 4, 5))
            sink_before, cpu_before = sink.stats(), cpu_s(ingester.pid)
            rate, latencies, accepted = asyncio.run(
                loopline(url, batches, args.concurrency, args.seconds)
            )
            cpu_after = cpu_s(ingester.pid)
            exposition = httpx.get(f"http://127.0.0.1:{health}/metrics", timeout=10).text
        finally:
            os.killpg(ingester.pid, signal.SIGTERM)
            ingester.wait(30)
    return Run(
        mode=mode,
        rate=rate,
        accepted=accepted,
        latencies=latencies,
        cpu_s=sum(cpu_after) - sum(cpu_before),
        others_s=cpu_after[1] - cpu_before[1],
        sink=sink.stats() - sink_before,  # the spans flushed at the stop included
        log_lines=len(log_file.read_bytes().splitlines()),
        metrics="faststream_published_messages_total" in exposition,
    )


MODES = {"both": ("off", "on"), "all": ("off", "local", "on", "sampled")}


def order(telemetry: str, runs: int) -> list[str]:
    """The modes to run, one after the other: each round all of them, the order turning by one
    from round to round (off, on; on, off; ...)."""
    modes = MODES.get(telemetry, (telemetry,))
    return [modes[(k + i) % len(modes)] for k in range(runs) for i in range(len(modes))]


def report(args: argparse.Namespace, anchor_rate: float, runs: list[Run]) -> None:
    print(f"records per request      {BATCH}; concurrency {args.concurrency}, {args.seconds:.0f} s")
    print(f"anchor (raw aiokafka)    {anchor_rate:10,.0f} records/s")
    print()
    print(
        f"{'run':>3} {'telemetry':<10}{'records/s':>10}{'records':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU us/rec':>11}{'of which':>9}{'spans/rec':>10}{'OTLP req':>9}{'OTLP KB':>9}"
        f"{'logs':>6}{'metrics':>8}"
    )
    for k, r in enumerate(runs, 1):
        per_record = r.sink.spans / r.accepted if r.accepted else 0.0
        print(
            f"{k:>3} {r.mode:<10}{r.rate:>10,.0f}{r.accepted:>9,}{r.percentile(0.5):>8.1f}"
            f"{r.percentile(0.99):>8.1f}{r.cpu_us:>11.0f}{r.others_us:>9.0f}{per_record:>10.2f}"
            f"{r.sink.requests:>9}{r.sink.bytes / 1024:>9,.0f}{r.log_lines:>6}"
            f"{'yes' if r.metrics else 'no':>8}"
        )
    print(
        "CPU us/rec: the ingester's CPU per record, all threads; of which: its threads but the "
        "event loop's (the span exporter's)"
    )
    print()
    medians: dict[str, tuple[float, float]] = {}
    for mode in ("off", "local", "on", "sampled"):
        mine = [r for r in runs if r.mode == mode]
        if not mine:
            continue
        rate = statistics.median(r.rate for r in mine)
        cpu = statistics.median(r.cpu_us for r in mine)
        others = statistics.median(r.others_us for r in mine)
        medians[mode] = (rate, cpu)
        p50 = statistics.median(r.percentile(0.5) for r in mine)
        p99 = statistics.median(r.percentile(0.99) for r in mine)
        print(
            f"loopline HTTP ingest, telemetry {mode:<7} {rate:8,.0f} records/s  (median of "
            f"{len(mine)}; p50 {p50:.1f} ms, p99 {p99:.1f} ms, ingester {cpu:.0f} CPU us/record, "
            f"{others:.0f} of them off the event loop)"
        )
    for mode, (rate, _) in medians.items():
        met = "met" if rate >= 5000 else "NOT met"
        print(
            f"telemetry {mode:<8} loopline / anchor {rate / anchor_rate:5.2f}; "
            f"target >= 5,000 records/s: {met}"
        )
    if "on" in medians and "off" in medians:
        ratio = medians["on"][0] / medians["off"][0]
        met = "met" if ratio >= 0.9 else "NOT met"
        print(
            f"telemetry on / off       {ratio:10.2f}  records/s (telemetry costs "
            f"{1 - ratio:.1%} of throughput; target <= 10%: {met})"
        )
        print(f"ingester CPU per record on / off: {medians['on'][1] / medians['off'][1]:.2f}")
    for other in ("local", "sampled"):
        if other in medians and "off" in medians:
            ratio = medians[other][0] / medians["off"][0]
            cpu = medians[other][1] / medians["off"][1]
            print(f"telemetry {other} / off: records/s {ratio:.2f}, CPU per record {cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load duration")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batches", type=int, default=1500, help="distinct batches per run")
    parser.add_argument(
        "--telemetry",
        choices=("both", "all", "on", "off", "local", "sampled"),
        default="both",
        help="both: on and off; all: also local (spans and metrics made, nothing exported) and "
        "sampled (on, one record's trace in ten kept)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per telemetry mode")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run each ingester under cProfile, its profile written into this folder",
    )
    args = parser.parse_args()

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        config = config_for_tests(Path(tmp) / "stack", REPO / ".loopline" / "install")
        stack.up(config, progress=lambda m: None, components=["kafka"])
        flows = Path(tmp) / "flows.yaml"
        flows.write_text("flows:\n  bench:\n    generate: [{plugin: openai}]\n")
        try:
            with OtlpSink() as sink:
                batches = make_batches(args.batches, uuid.uuid4().hex[:6])
                anchor_rate = asyncio.run(anchor(config.kafka_bootstrap, batches))
                for k, mode in enumerate(order(args.telemetry, args.runs), 1):
                    print(f"  run {k}: telemetry {mode} ...", flush=True)
                    runs.append(one_run(config, flows, mode, sink, args))
        finally:
            stack.down(config)
    report(args, anchor_rate, runs)


if __name__ == "__main__":
    main()
