"""The services that talk to Argilla wait for it at start instead of exiting: an orchestrator
starts pods in any order, and a crash loop with growing back-off would only delay the system.

Each service is started (as `loopline run` does, in-process, with a health port) against an
Argilla address on a free loopback port where nothing listens yet, with the test stack's real
Kafka. After several seconds it still runs and `/healthz` names the Argilla address it waits on.
Then a TCP forwarder opens on that port, in front of the test stack's real Argilla, and the
service proceeds: the publisher creates its dataset and publishes a judged record into it; the
collector registers its webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import argilla as rg
import httpx
import pytest

import devstack as stack
from devstack.testing import free_port
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.feedback_collector.app import SERVICE as COLLECTOR
from shared.events import RECORDS_JUDGED, Record
from shared.flows import FlowsConfig, parse_flows
from shared.service import ServiceSpec, run_service
from shared.settings import ArgillaSettings, FeedbackSettings, RetrySettings, Settings
from tests.support.service_helpers import produce

RUN = uuid.uuid4().hex[:6]
DOWN_FOR_S = 6.0  # longer than the SDK's own connection attempts
WITHIN_S = 60.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class TcpForwarder:
    """Connections to 127.0.0.1:`port` piped both ways to `host:target_port`."""

    def __init__(self, port: int, host: str, target_port: int) -> None:
        self.port, self.host, self.target_port = port, host, target_port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()


@contextlib.asynccontextmanager
async def forwarding(port: int, target_url: str) -> AsyncIterator[None]:
    target = urlsplit(target_url)
    assert target.hostname is not None and target.port is not None
    forwarder = TcpForwarder(port, target.hostname, target.port)
    await forwarder.start()
    try:
        yield
    finally:
        await forwarder.stop()


@contextlib.asynccontextmanager
async def started(
    spec: ServiceSpec, settings: Settings, flows: FlowsConfig, ready: asyncio.Event
) -> AsyncIterator[asyncio.Task[Any]]:
    """`spec` running in-process as `loopline run` runs it; stopped at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(spec, settings, stop=stop, flows=flows, ready=ready))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def waiting(settings: Settings, argilla_port: int, local_stack: stack.StackConfig) -> Settings:
    """`settings` with Argilla at a loopback port where nothing listens yet, a health port and
    a short backoff (the service notices Argilla within a second once it answers)."""
    return settings.model_copy(
        update={
            "argilla": ArgillaSettings(
                api_url=f"http://127.0.0.1:{argilla_port}",
                api_key=local_stack.argilla_api_key,
                workspace=local_stack.argilla_workspace,
            ),
            "kafka": settings.kafka.model_copy(update={"group_prefix": f"wait-{RUN}"}),
            "retry": RetrySettings(max_attempts=2, backoff_initial_s=0.2, backoff_max_s=1.0),
            "health_port": free_port(),
        }
    )


async def healthz(settings: Settings) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.health_port}") as http:
        return await http.get("/healthz")


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """`check()`'s first truthy answer (run in a thread: the SDK is synchronous)."""
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        if found := await asyncio.to_thread(check):
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not within {WITHIN_S:.0f} s")


@pytest.fixture(scope="module")
def owner(local_stack: stack.StackConfig) -> rg.Argilla:
    """The test stack's Argilla, reached directly (not through the forwarder)."""
    key = local_stack.argilla_api_key.get_secret_value()
    return rg.Argilla(api_url=local_stack.argilla_url, api_key=key)


def judged(flow: str) -> Record:
    return Record.model_validate(
        {
            "record_id": f"{flow}-1",
            "flow": flow,
            "instruction": "Reverse a list in Python",
            "responses": [
                {"text": "xs[::-1]", "model": "m-a", "source": "generator"},
                {"text": "list(reversed(xs))", "model": "m-b", "source": "generator"},
            ],
            "judgments": [
                {
                    "rubric": "multi-aspect",
                    "judge_model": "judge-m",
                    "ratings": [
                        [{"aspect": "overall", "score": 4}],
                        [{"aspect": "overall", "score": 2}],
                    ],
                    "margin": 2.0,
                }
            ],
        }
    )


async def test_the_publisher_waits_for_argilla_then_publishes(
    settings: Settings, local_stack: stack.StackConfig, owner: rg.Argilla
) -> None:
    flow, dataset = f"wait-pub-{RUN}", f"wait-{RUN}"
    flows = parse_flows(
        {"flows": {flow: {"publish": {"plugin": "preference", "dataset": dataset}}}}, "test"
    )
    argilla_port = free_port()
    run_settings = waiting(settings, argilla_port, local_stack)
    workspace = local_stack.argilla_workspace
    ready = asyncio.Event()
    async with started(PUBLISHER, run_settings, flows, ready) as task:
        await asyncio.sleep(DOWN_FOR_S)
        assert not task.done(), task.exception() if task.done() else None
        health = await healthz(run_settings)
        # Kafka answers, but nothing is consumed before the datasets exist: not ready yet.
        assert health.status_code == 503, health.text
        assert health.json()["status"] == "starting"
        assert f"http://127.0.0.1:{argilla_port}" in (health.json()["waiting_on"] or "")
        assert not ready.is_set()
        assert await asyncio.to_thread(owner.datasets, dataset, workspace=workspace) is None

        async with forwarding(argilla_port, local_stack.argilla_url):
            await asyncio.wait_for(ready.wait(), WITHIN_S)
            # The dataset is there at start, before any record.
            assert await asyncio.to_thread(owner.datasets, dataset, workspace=workspace)
            assert (await healthz(run_settings)).json()["waiting_on"] is None

            record = judged(flow)
            await produce(
                run_settings.kafka, run_settings.kafka.topic(RECORDS_JUDGED), [record.to_bytes()]
            )

            def landed() -> bool:
                found = owner.datasets(dataset, workspace=workspace)
                return found is not None and any(r.id == record.record_id for r in found.records)

            await eventually(landed, f"record {record.record_id} in {workspace}/{dataset}")


async def test_the_collector_waits_for_argilla_then_registers_its_webhook(
    settings: Settings, local_stack: stack.StackConfig, owner: rg.Argilla
) -> None:
    flows = parse_flows(
        {"flows": {f"wait-col-{RUN}": {"publish": {"plugin": "preference"}}}}, "test"
    )
    argilla_port, listener_port = free_port(), free_port()
    public_url = f"http://127.0.0.1:{listener_port}/argilla/webhooks"
    run_settings = waiting(settings, argilla_port, local_stack).model_copy(
        update={
            "feedback": FeedbackSettings(
                port=listener_port, public_url=public_url, reconcile_interval_s=600
            )
        }
    )

    def hooks() -> list[Any]:
        return [h for h in owner.webhooks.list() if h.url == public_url]

    ready = asyncio.Event()
    try:
        async with started(COLLECTOR, run_settings, flows, ready) as task:
            await asyncio.sleep(DOWN_FOR_S)
            assert not task.done(), task.exception() if task.done() else None
            # It runs (ready once its consumers joined: waiting on Argilla is no 503), and
            # says what it waits on.
            deadline = time.monotonic() + WITHIN_S
            while (health := await healthz(run_settings)).status_code != 200:
                assert time.monotonic() < deadline, health.text
                await asyncio.sleep(0.2)
            assert f"http://127.0.0.1:{argilla_port}" in (health.json()["waiting_on"] or "")
            assert await asyncio.to_thread(hooks) == []

            async with forwarding(argilla_port, local_stack.argilla_url):
                await eventually(hooks, f"a webhook for {public_url}")

                async def waits_on_nothing() -> bool:
                    return (await healthz(run_settings)).json()["waiting_on"] is None

                deadline = time.monotonic() + WITHIN_S
                while not await waits_on_nothing():
                    assert time.monotonic() < deadline, "still waiting on something"
                    await asyncio.sleep(0.2)
    finally:
        for hook in await asyncio.to_thread(hooks):
            await asyncio.to_thread(hook.delete)
