"""A service's latest failure (`DeadLetters.last_error`), as its /healthz body reports it."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker

from shared.broker import build_broker
from shared.dead_letters import DeadLetters, PermanentError
from shared.flows import parse_flows
from shared.health import health_body
from shared.service import ServiceContext, ServiceStats
from shared.settings import RetrySettings, Settings


async def no_sleep(seconds: float) -> None:
    return None


async def test_every_failed_attempt_is_the_latest_error_until_the_next() -> None:
    letters = DeadLetters("judge", RetrySettings(max_attempts=2), sleep=no_sleep)
    assert letters.last_error is None
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("endpoint hiccup")
        return "ok"

    assert await letters.with_retries(flaky, "judging r1") == "ok"
    first = letters.last_error
    assert first is not None
    assert first.error == "judging r1: ConnectionError: endpoint hiccup"
    assert first.kind == "transient"

    async def bad() -> None:
        raise PermanentError("template refuses it")

    with pytest.raises(PermanentError):
        await letters.with_retries(bad, "judging r2")
    assert letters.last_error is not None
    assert letters.last_error.error == "judging r2: PermanentError: template refuses it"
    assert letters.last_error.kind == "permanent"
    assert letters.last_error.at >= first.at


async def test_healthz_reports_the_last_error() -> None:
    settings = Settings()
    broker, letters = build_broker(settings, "judge")
    flows = parse_flows({"flows": {"f": {"judge": {"plugin": "additive"}}}}, "test")
    context = ServiceContext(
        name="judge",
        settings=settings,
        flows=flows,
        broker=broker,
        dead_letters=letters,
        stats=ServiceStats(phase="running"),
    )
    letters.sleep = no_sleep
    async with TestKafkaBroker(broker):
        _, before = await health_body(context)

        async def bad() -> None:
            raise PermanentError("too large")

        with pytest.raises(PermanentError):
            await letters.with_retries(bad, "handling records.generated")
        status, after = await health_body(context)
    assert before["last_error"] is None
    assert status == 200
    assert after["last_error"]["error"] == "handling records.generated: PermanentError: too large"
    assert after["last_error"]["kind"] == "permanent"
    assert after["last_error"]["at"].endswith("+00:00")
