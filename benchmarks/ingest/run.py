"""Ingest benchmark: records/s accepted over HTTP (batches of 100) vs raw aiokafka, one run.

Starts a real Tansu broker (in-memory) from the local stack and the ingester as its own process,
then, side by side on the same broker and the same records:
  1. anchor: raw aiokafka producing the records' JSON (keyed by record id, acks=all);
  2. Loopline: concurrent HTTP clients POSTing batches of 100 to /v1/records.
Prints records/s and the request latency p50/p99. Every process it starts is stopped by pid.

    python benchmarks/ingest/run.py [--seconds 20] [--concurrency 8]
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
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="HTTP load duration")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batches", type=int, default=1500, help="distinct batches prepared")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        config = config_for_tests(Path(tmp) / "stack", REPO / ".loopline" / "install")
        stack.up(config, progress=lambda m: None, components=["kafka"])
        flows = Path(tmp) / "flows.yaml"
        flows.write_text("flows:\n  bench:\n    generate: [{plugin: openai}]\n")
        port = free_port()
        env = {
            **os.environ,
            "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": config.kafka_bootstrap,
            "LOOPLINE_FLOWS_FILE": str(flows),
            "LOOPLINE_INGEST__PORT": str(port),
            "LOOPLINE_INGEST__DEFAULT_FLOW": "bench",
        }
        ingester = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "ingester", "--log-level", "WARNING"],
            env=env,
            start_new_session=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", ingester)
            run = uuid.uuid4().hex[:6]
            warmup = make_batches(20, f"warm-{run}")
            asyncio.run(loopline(f"http://127.0.0.1:{port}/v1/records", warmup, 4, 5))
            batches = make_batches(args.batches, run)
            anchor_rate = asyncio.run(anchor(config.kafka_bootstrap, batches))
            rate, latencies, accepted = asyncio.run(
                loopline(
                    f"http://127.0.0.1:{port}/v1/records", batches, args.concurrency, args.seconds
                )
            )
        finally:
            os.killpg(ingester.pid, signal.SIGTERM)
            ingester.wait(30)
            stack.down(config)

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"records per request      {BATCH}")
    print(f"anchor (raw aiokafka)    {anchor_rate:10,.0f} records/s")
    print(
        f"loopline HTTP ingest     {rate:10,.0f} records/s  ({accepted:,} records, "
        f"{len(latencies)} requests, concurrency {args.concurrency})"
    )
    print(f"request latency          p50 {p50:.1f} ms   p99 {p99:.1f} ms")
    print(f"loopline / anchor        {rate / anchor_rate:10.2f}")
    print(f"target                   >= 5,000 records/s: {'met' if rate >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
