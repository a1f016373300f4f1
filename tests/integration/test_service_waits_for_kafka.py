"""A service started before Kafka answers waits for it instead of exiting: its health port is
up (live, not ready, saying what it waits on), and once a broker answers on the configured
address it creates its topics and starts consuming (an orchestrator starts pods in any order;
a crash loop with growing back-off would delay the whole system)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import httpx

from devstack.installer import InstallPaths
from devstack.testing import free_port
from services.generator.app import SERVICE
from shared.service import run_service
from shared.settings import KafkaSettings, RetrySettings, Settings

REPO = Path(__file__).resolve().parents[2]


def start_tansu(port: int) -> subprocess.Popen[bytes]:
    """An in-memory Tansu broker on `port` (the stack's binary); the caller stops it."""
    install = Path(os.environ.get("LOOPLINE_TEST_INSTALL_DIR", REPO / ".loopline" / "install"))
    listener = f"tcp://127.0.0.1:{port}"
    command = [str(InstallPaths(install).tansu), "broker", "--listener-url", listener]
    command += ["--advertised-listener-url", listener, "--storage-engine", "memory://t/"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_a_service_waits_for_kafka_then_runs() -> None:
    kafka_port, health_port = free_port(), free_port()
    settings = Settings(
        flows_file=REPO / "flows",
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{kafka_port}", topic_partitions=1),
        retry=RetrySettings(backoff_initial_s=0.2, backoff_max_s=1.0),
        health_port=health_port,
        shutdown_timeout_s=5,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(SERVICE, settings, stop=stop, ready=ready))
    tansu: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.sleep(6)  # longer than the client's own connection attempts
        assert not task.done(), task.exception() if task.done() else None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as client:
            health = await client.get("/healthz")
            assert health.status_code == 503
            assert f"127.0.0.1:{kafka_port}" in (health.json()["waiting_on"] or "")
            assert (await client.get("/metrics")).status_code == 200  # alive meanwhile

            tansu = start_tansu(kafka_port)
            started = time.monotonic()
            await asyncio.wait_for(ready.wait(), timeout=60)
            assert (await client.get("/healthz")).json()["waiting_on"] is None
            # Ready once its consumers have joined the group (a few seconds after the start).
            while (health := await client.get("/healthz")).status_code != 200:
                assert health.json()["status"].startswith("joining its consumer group")
                assert time.monotonic() - started < 30, health.text
                await asyncio.sleep(0.2)
            assert time.monotonic() - started < 30
            held = health.json()["partitions"]
            assert [p for partitions in held.values() for p in partitions] == [
                f"{settings.kafka.topic('records.ingested')}/0"
            ]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        if tansu is not None:
            tansu.terminate()
            tansu.wait(10)
