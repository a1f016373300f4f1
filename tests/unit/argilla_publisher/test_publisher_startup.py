"""The publisher's start: registering asks nothing of Argilla; the flows' datasets are prepared
by a step run before anything is consumed (`ServiceContext.before_consuming`), which waits out
an Argilla that does not answer yet, saying so on `/healthz`, and ends the start on a drifted
dataset or a refusal no retry can change."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from argilla._exceptions import ArgillaAPIError
from faststream.kafka import TestKafkaBroker
from pydantic import SecretStr

from devstack.sample_records import record
from services.argilla_publisher import app as publisher_app
from services.argilla_publisher import publishing
from services.argilla_publisher.bulk import UpsertResult
from services.argilla_publisher.targets import (
    Publication,
    SettingsDriftError,
    Target,
    sdk_call,
)
from shared.broker import build_broker
from shared.events import RECORDS_JUDGED
from shared.failures import PermanentError, TransientError
from shared.flows import PublishRef, parse_flows
from shared.service import ServiceContext
from shared.settings import ArgillaSettings, RetrySettings, Settings
from shared.templates import Template

URL = "http://argilla.example:6900"
FLOW = "pub"


@dataclass
class FakeDataset:
    name: str
    id: str


class FakeWriter:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, list[dict[str, Any]]]] = []

    async def upsert(self, dataset_id: str, name: str, items: list[dict[str, Any]]) -> UpsertResult:
        self.upserts.append((name, list(items)))
        return UpsertResult(upserted=list(range(len(items))))

    async def aclose(self) -> None:
        return None


@dataclass
class Start:
    """The publisher registered against a scripted Argilla: `clients` and `prepares` fail with
    their scripted errors, in order, then succeed."""

    context: ServiceContext
    writer: FakeWriter
    clients: list[BaseException]
    prepares: list[BaseException]
    clients_made: int = 0
    prepared: int = 0
    waiting: list[str | None] | None = None  # `waiting_on` at each backoff sleep

    async def run(self) -> None:
        for step in self.context.starters:
            await step()


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Start:
    settings = Settings(
        argilla=ArgillaSettings(api_url=URL, api_key=SecretStr("fake-argilla-key")),
        retry=RetrySettings(max_attempts=3),
    )
    broker, dead_letters = build_broker(settings, "argilla-publisher")
    flows = parse_flows({"flows": {FLOW: {"publish": {"plugin": "preference"}}}}, "test")
    context = ServiceContext(
        name="argilla-publisher",
        settings=settings,
        flows=flows,
        broker=broker,
        dead_letters=dead_letters,
    )
    s = Start(context, FakeWriter(), clients=[], prepares=[], waiting=[])

    async def no_sleep(seconds: float) -> None:
        assert s.waiting is not None
        s.waiting.append(dead_letters.waiting_on)

    def client(**_: Any) -> object:
        s.clients_made += 1
        if s.clients:
            raise s.clients.pop(0)
        return object()

    def prepare(
        client: Any, flow: str, ref: PublishRef, template: Template, workspace: str
    ) -> Publication:
        if s.prepares:
            raise s.prepares.pop(0)
        s.prepared += 1
        target = Target(FakeDataset(f"ds-{flow}", f"id-{flow}"), workspace)
        return Publication(flow, template, (target,), ref.when)

    dead_letters.sleep = no_sleep
    monkeypatch.setattr(publisher_app.rg, "Argilla", client)
    monkeypatch.setattr(publisher_app, "BulkWriter", lambda *_, **__: s.writer)
    monkeypatch.setattr(publisher_app, "prepare", prepare)
    monkeypatch.setattr(publishing, "payload", lambda r, d: {"id": str(r.id), "ds": d.name})
    return s


async def test_registering_asks_nothing_of_argilla(start: Start) -> None:
    publisher_app.register(start.context)
    assert start.clients_made == 0 and start.prepared == 0
    assert len(start.context.starters) == 1


async def test_the_start_waits_for_argilla_saying_so_then_records_are_published(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    start.clients = [refused, refused, refused]  # Argilla not up yet
    start.prepares = [TransientError("503 while Argilla migrates its database")]
    publisher_app.register(start.context)
    await start.run()
    assert start.clients_made == 4 and start.prepared == 1
    assert start.waiting is not None and len(start.waiting) == 4
    assert all(URL in (w or "") and FLOW in (w or "") for w in start.waiting), start.waiting
    assert "Connection refused" in (start.waiting[0] or "")
    assert start.context.dead_letters.waiting_on is None

    broker = start.context.broker
    async with TestKafkaBroker(broker) as test_broker:
        monkeypatch.setattr(broker, "publish", lambda *_, **__: asyncio.sleep(0))
        await test_broker.publish_batch(
            record(flow=FLOW, record_id="r1").to_bytes(), topic=RECORDS_JUDGED
        )
    assert [(name, [i["id"] for i in items]) for name, items in start.writer.upserts] == [
        (f"ds-{FLOW}", ["r1"])
    ]


async def test_a_drifted_dataset_ends_the_start_with_the_difference(start: Start) -> None:
    drift = "Argilla dataset admin/pub exists with other settings than the template: field x"
    start.prepares = [SettingsDriftError(drift)] * 5
    publisher_app.register(start.context)
    with pytest.raises(SettingsDriftError, match="field x"):
        await start.run()
    assert start.prepared == 0


async def test_a_refusal_no_retry_changes_ends_the_start_at_once(start: Start) -> None:
    start.prepares = [ArgillaAPIError("422: workspace name not valid", status_code=422)]
    publisher_app.register(start.context)
    with pytest.raises(PermanentError, match="workspace name not valid"):
        await start.run()
    assert start.waiting == []  # not retried


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (429, TransientError),
        (408, TransientError),
        (401, TransientError),
        (403, TransientError),
        (400, PermanentError),
        (404, PermanentError),
        (409, PermanentError),
        (422, PermanentError),
    ],
)
async def test_sdk_errors_are_told_apart_by_status(status: int, kind: type[Exception]) -> None:
    def failing() -> None:
        raise ArgillaAPIError(f"status {status}", status_code=status)

    with pytest.raises(kind, match=f"status {status}"):
        await sdk_call(failing)
