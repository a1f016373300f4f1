"""The collector's background loop waits out an Argilla that does not answer (at start or
later), `waiting_on` naming its address, then registers its webhook and reconciles; a stop
during the wait ends the loop at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from services.feedback_collector import app as collector_app
from services.feedback_collector.argilla_reader import Registration
from tests.unit.feedback_collector.fakes import SECRET, FakeArgilla, FakeBroker, Life


class ScriptedWebhooks:
    """`ensure_webhook` failing with `failures`, in order, then registering (or failing with
    `forever` every time)."""

    def __init__(self, failures: list[BaseException], forever: BaseException | None = None) -> None:
        self.failures, self.forever = failures, forever
        self.calls = 0

    def __call__(self, api_url: str, api_key: str, url: str) -> Registration:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.forever is not None:
            raise self.forever
        return Registration("hook-1", (SECRET,), "created")


def collector_with(
    monkeypatch: pytest.MonkeyPatch, webhooks: ScriptedWebhooks
) -> tuple[Life, FakeBroker, list[str | None]]:
    """A collector whose backoff sleeps are instant and note `waiting_on` each time."""
    broker = FakeBroker()
    life = Life(FakeArgilla(), broker, monkeypatch)
    life.collector.secrets = ()
    dead_letters = life.collector.context.dead_letters
    waiting: list[str | None] = []

    async def no_sleep(seconds: float) -> None:
        waiting.append(dead_letters.waiting_on)
        await asyncio.sleep(0)

    dead_letters.sleep = no_sleep
    monkeypatch.setattr(collector_app, "ensure_webhook", webhooks)
    return life, broker, waiting


async def until(check: Any, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_the_loop_waits_for_argilla_saying_so_then_registers_and_reconciles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    webhooks = ScriptedWebhooks([refused, refused, RuntimeError("502 from a proxy")])
    life, broker, waiting = collector_with(monkeypatch, webhooks)
    url = life.collector.argilla.api_url
    task = asyncio.create_task(life.collector.run())
    try:
        await until(lambda: life.collector.state_loaded and webhooks.calls >= 5)
        assert len(waiting) == 3
        assert all(url in (w or "") and "webhook" in (w or "") for w in waiting), waiting
        assert "Connection refused" in (waiting[0] or "") and "502" in (waiting[2] or "")
        assert life.collector.secrets == (SECRET,)
        # Registered at start, then again by the first reconciliation pass.
        assert webhooks.calls == 5
        assert life.collector.context.dead_letters.waiting_on is None
    finally:
        broker.running = False
        await asyncio.wait_for(task, 5)


async def test_a_stop_while_waiting_ends_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    webhooks = ScriptedWebhooks([], forever=httpx.ConnectError("refused"))
    life, broker, waiting = collector_with(monkeypatch, webhooks)
    task = asyncio.create_task(life.collector.run())
    await until(lambda: len(waiting) >= 2)
    broker.running = False
    await asyncio.wait_for(task, 2)
    assert not life.collector.state_loaded
    assert life.collector.context.dead_letters.waiting_on is None
