"""The health port (shared/health.py): /healthz and /metrics on a real server on a free loopback
port, /metrics being prometheus_client's exposition with every documented metric in it."""

from __future__ import annotations

import httpx
import pytest
from aiokafka import TopicPartition
from faststream.kafka import TestKafkaBroker

from shared.broker import build_broker
from shared.flows import parse_flows
from shared.health import serve_health
from shared.metrics import record_passed
from shared.service import ServiceContext, ServiceStats
from shared.settings import Settings
from tests.support.metrics import documented, family_name, load_every_metric, scraped

FLOWS = parse_flows({"flows": {"support": {"judge": {"plugin": "additive"}}}}, "test")


def context(name: str = "judge") -> ServiceContext:
    settings = Settings()
    broker, dead_letters = build_broker(settings, name)
    return ServiceContext(
        name=name,
        settings=settings,
        flows=FLOWS,
        broker=broker,
        dead_letters=dead_letters,
        stats=ServiceStats(phase="running"),  # as run_service has it once started
    )


async def test_healthz_and_metrics_on_one_port() -> None:
    ctx = context()
    async with TestKafkaBroker(ctx.broker):
        health = await serve_health(ctx, "127.0.0.1", 0)
        try:
            assert health.port > 0
            base = f"http://127.0.0.1:{health.port}"
            async with httpx.AsyncClient(base_url=base) as client:
                alive = await client.get("/healthz")
                record_passed("judge", "support", "judge")
                metrics = await client.get("/metrics")
                missing = await client.get("/nothing")
        finally:
            await health.stop()
    assert alive.status_code == 200
    assert alive.json()["service"] == "judge"
    assert alive.json()["status"] == "ok"
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'loopline_records_total{flow="support",service="judge",stage="judged"}' in metrics.text
    assert missing.status_code == 404


async def test_healthz_says_when_the_broker_is_unreachable() -> None:
    ctx = context()  # never started: a ping fails
    health = await serve_health(ctx, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{health.port}/healthz")
    finally:
        await health.stop()
    assert answer.status_code == 503
    assert answer.json()["status"] == "broker unreachable"


async def test_every_documented_metric_is_on_metrics() -> None:
    load_every_metric()
    ctx = context("exporter")
    health = await serve_health(ctx, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{health.port}/metrics")).text
            open_metrics = await client.get(
                f"http://127.0.0.1:{health.port}/metrics",
                headers={"accept": "application/openmetrics-text; version=1.0.0"},
            )
    finally:
        await health.stop()
    families = scraped(text)
    table = documented()
    assert len(table) >= 20
    for name, kind in table.items():
        assert families.get(family_name(name, kind)) == kind, name
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")


async def test_a_port_in_use_fails_the_start() -> None:
    ctx = context()
    first = await serve_health(ctx, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            await serve_health(ctx, "127.0.0.1", first.port)
    finally:
        await first.stop()


async def test_healthz_is_ready_only_once_running_and_every_consumer_joined() -> None:
    ctx = context()
    ctx.stats.phase = "starting"
    judged = ctx.membership.listener("judge_records_generated")
    replayed = ctx.membership.listener("judge_dlq_replays")
    async with TestKafkaBroker(ctx.broker):
        health = await serve_health(ctx, "127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health.port}") as client:

                async def ask() -> tuple[int, str, dict[str, list[str]]]:
                    answer = await client.get("/healthz")
                    return answer.status_code, answer.json()["status"], answer.json()["partitions"]

                starting = await ask()
                ctx.stats.phase = "running"
                joining = await ask()
                await judged.on_partitions_assigned(
                    {TopicPartition("records.generated", 1), TopicPartition("records.generated", 0)}
                )
                half = await ask()
                await replayed.on_partitions_assigned(set())  # joined, with nothing to hold
                joined = await ask()
                await judged.on_partitions_revoked({TopicPartition("records.generated", 1)})
                rebalancing = await ask()
                ctx.stats.phase = "stopping"
                stopping = await ask()
        finally:
            await health.stop()
    assert starting == (503, "starting", {})
    both = "joining its consumer group (judge_records_generated, judge_dlq_replays)"
    assert joining == (503, both, {})
    held = {"judge_records_generated": ["records.generated/0", "records.generated/1"]}
    assert half == (503, "joining its consumer group (judge_dlq_replays)", held)
    assert joined == (200, "ok", {**held, "judge_dlq_replays": []})
    assert rebalancing[:2] == (200, "ok")  # a rebalance takes nothing back from readiness
    assert stopping[:2] == (503, "stopping")
