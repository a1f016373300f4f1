"""Helpers for ingester integration tests: run the service in-process, read topics back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel

from shared.broker import admin_client_options
from shared.dead_letters import DeadLetter
from shared.events import Record
from shared.flows import FlowsConfig
from shared.service import ServiceSpec, run_service
from shared.settings import KafkaSettings, Settings

EventT = TypeVar("EventT", bound=BaseModel)
SUPPORT_KEY, ADMIN_KEY = "key-support-0123456789", "key-admin-9876543210"


@asynccontextmanager
async def running_service(
    spec: ServiceSpec, settings: Settings, flows: FlowsConfig
) -> AsyncIterator[None]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_service(spec, settings, stop=stop, flows=flows, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    waiter.cancel()
    assert ready.is_set(), "service did not start within 60 s"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def read_events(
    kafka: KafkaSettings,
    topic: str,
    event_type: type[EventT],
    keep: Callable[[EventT], bool],
    done: Callable[[list[EventT]], bool],
    within_s: float = 45.0,
    settle_s: float = 1.5,
) -> list[EventT]:
    """Every event on `topic` (from the start) that `keep` accepts, once `done` is true of them
    (then `settle_s` longer, so that unexpected extra ones would show)."""
    consumer = AIOKafkaConsumer(
        topic, **admin_client_options(kafka), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[EventT] = []
    try:
        deadline = time.monotonic() + within_s
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for message in messages:
                    event = event_type.model_validate_json(message.value or b"")
                    if keep(event):
                        found.append(event)
            if settled_at is None and done(found):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                break
    finally:
        await consumer.stop()
    return found


async def read_records(
    kafka: KafkaSettings,
    topic: str,
    wanted: set[str],
    settle_s: float = 1.0,
    within_s: float = 30.0,
) -> list[Record]:
    """Every record on `topic` whose id is in `wanted` (read from the start; duplicates kept).

    Reads until every wanted id arrived, then `settle_s` longer so extra copies would show.
    """
    return await read_events(
        kafka,
        topic,
        Record,
        keep=lambda record: record.record_id in wanted,
        done=lambda found: wanted <= {record.record_id for record in found},
        within_s=within_s,
        settle_s=settle_s,
    )


async def produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**admin_client_options(kafka), acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=value[:16])
    finally:
        await producer.stop()


async def read_dead_letters(
    kafka: KafkaSettings, topic: str, wanted: set[str], within_s: float = 60.0
) -> list[DeadLetter]:
    """Dead letters of `topic` whose original body is a record with an id in `wanted`."""
    consumer = AIOKafkaConsumer(
        f"{topic}.dlq",
        **admin_client_options(kafka),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + within_s
        while (
            time.monotonic() < deadline
            and {Record.model_validate_json(letter.body).record_id for letter in letters} < wanted
        ):
            batch = await consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for message in messages:
                    try:
                        record_id = Record.model_validate_json(message.value or b"").record_id
                    except ValueError:
                        continue
                    if record_id in wanted:
                        headers = {k: v.decode() for k, v in message.headers}
                        letters.append(DeadLetter.from_headers(message.value or b"", headers))
    finally:
        await consumer.stop()
    return letters


def create_annotators(owner: Any, workspace: Any, usernames: list[str]) -> dict[str, str]:
    """Argilla annotator users in `workspace`, created by the owner (rg.Argilla); their API keys."""
    import argilla as rg

    keys: dict[str, str] = {}
    for username in usernames:
        user = rg.User(
            username=username,
            password="annotator-password-1",
            role="annotator",
            client=owner,
        ).create()
        user.add_to_workspace(workspace)
        # The SDK's user model drops the key; the owner reads it from the REST API.
        fetched = owner.http_client.get(f"/api/v1/users/{user.id}")
        fetched.raise_for_status()
        keys[user.username] = fetched.json()["api_key"]
    return keys


def with_argilla_and_collector(settings: Settings, local_stack: Any) -> Settings:
    """`settings` pointed at the test stack's Argilla, with the collector's webhook receiver on
    a free loopback port (reconciliation only every 10 minutes: webhooks do the work)."""
    from devstack.testing import free_port
    from shared.settings import ArgillaSettings, FeedbackSettings

    port = free_port()
    return settings.model_copy(
        update={
            "argilla": ArgillaSettings(
                api_url=local_stack.argilla_url,
                api_key=local_stack.argilla_api_key,
                workspace=local_stack.argilla_workspace,
            ),
            "feedback": FeedbackSettings(
                port=port,
                public_url=f"http://127.0.0.1:{port}/argilla/webhooks",
                reconcile_interval_s=600,
            ),
        }
    )
