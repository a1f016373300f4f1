"""The probes of every rendered workload, asked of the real health app (shared/health.py):
liveness never fails because Kafka, Argilla or an LLM is away (the service retries those in
place; a restart would only start the wait over), readiness does while Kafka is away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from shared.broker import build_broker
from shared.failures import TransientError
from shared.flows import parse_flows
from shared.health import health_app
from shared.service import ServiceContext, ServiceStats
from shared.settings import RetrySettings, Settings
from tests.unit.deploy.k8s_render import OVERLAYS, containers, render, service_of, workloads

FLOWS = parse_flows({"flows": {"support": {"judge": {"plugin": "additive"}}}}, "test")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def probe_paths(overlay: str) -> dict[str, dict[str, str]]:
    """service -> probe -> the path it asks."""
    return {
        service_of(w): {p: containers(w)[0][p]["httpGet"]["path"] for p in PROBES}
        for w in workloads(render(overlay))
    }


def context() -> ServiceContext:
    settings = Settings(retry=RetrySettings(backoff_initial_s=0.05, backoff_max_s=0.05))
    broker, dead_letters = build_broker(settings, "judge")
    return ServiceContext(
        name="judge",
        settings=settings,
        flows=FLOWS,
        broker=broker,
        dead_letters=dead_letters,
        stats=ServiceStats(phase="running"),  # as run_service has it once started
    )


async def status(ctx: ServiceContext, path: str) -> int:
    transport = httpx.ASGITransport(app=health_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return (await client.get(path)).status_code


@contextlib.asynccontextmanager
async def waiting_on_argilla(ctx: ServiceContext) -> AsyncIterator[None]:
    """The service retrying an Argilla outage in place, as its handlers do."""

    retried = asyncio.Event()
    attempts = 0

    async def argilla_down() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:  # the first failure is on record: the service says it waits
            retried.set()
        raise TransientError("Argilla unreachable")

    task = asyncio.create_task(ctx.dead_letters.with_retries(argilla_down, "publishing"))
    await retried.wait()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_kafka_away_fails_readiness_only(overlay: str) -> None:
    ctx = context()  # its broker never started: every ping fails
    for service, paths in probe_paths(overlay).items():
        assert await status(ctx, paths["readinessProbe"]) == 503, service
        assert await status(ctx, paths["livenessProbe"]) == 200, service
        assert await status(ctx, paths["startupProbe"]) == 200, service


@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_waiting_on_argilla_or_an_llm_fails_no_probe(overlay: str) -> None:
    ctx = context()
    async with TestKafkaBroker(ctx.broker), waiting_on_argilla(ctx):
        assert "Argilla unreachable" in (ctx.dead_letters.waiting_on or "")
        for service, paths in probe_paths(overlay).items():
            for probe, path in paths.items():
                assert await status(ctx, path) == 200, (service, probe)
