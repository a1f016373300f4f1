"""Each new version is pushed to the Hub (when its flow says so) and announced on
`datasets.exported` until done: the broker's and the Hub's trouble is retried for as long as it
lasts, and a version whose announcement a crash cut off is announced at the next start, once.
A refusal from the Hub (a bad token) is not retried: the version stays on disk, announced.

On FastStream's in-memory test broker; retries do not sleep.
"""

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import TestKafkaBroker
from huggingface_hub.errors import HfHubHTTPError

from services.exporter import hub
from services.exporter.app import register
from services.exporter.export import accept, store_path
from services.exporter.on_demand import export_now
from services.exporter.store import ExportStore
from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED
from tests.unit.exporter.service_helpers import (
    Outputs,
    close,
    completed_event,
    exporter_context,
    record_ids,
)
from tests.unit.exporter.test_hub_push import FakeHub

N = 12
HUB = {"repo_id": "my-org/support"}


def hub_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://huggingface.co/api/datasets/my-org/support")
    return HfHubHTTPError(
        f"{status} from the Hub", response=httpx2.Response(status, request=request)
    )


async def test_the_announcement_is_retried_until_the_broker_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = exporter_context(tmp_path, every_records=N)
    out = Outputs(ctx.broker)
    register(ctx)
    published = [completed_event(i) for i in range(N)]
    refused: list[str] = []
    async with TestKafkaBroker(ctx.broker) as broker:
        publish = broker.publish

        async def flaky_publish(message: Any, topic: str = "", **kwargs: Any) -> Any:
            if topic == DATASETS_EXPORTED and len(refused) < 4:
                refused.append(topic)
                raise KafkaTimeoutError("no leader for datasets.exported")
            return await publish(message, topic=topic, **kwargs)

        monkeypatch.setattr(broker, "publish", flaky_publish)
        await broker.publish_batch(*(body for _, body in published), topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    assert len(refused) == 4
    assert (event.flow, event.format, event.version, event.rows) == ("support", "sft", 1, N)
    assert record_ids(Path(event.location)) == sorted(rid for rid, _ in published)
    assert out.announced.empty()  # once
    assert out.dead_letters == []


async def test_the_hub_push_is_retried_until_the_hub_takes_it_then_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [httpx2.ConnectError("connection refused"), hub_error(503), hub_error(429)]
    fake = FakeHub(failures=list(failures))
    announced_before_push: list[bool] = []
    commit = fake.create_commit

    def create_commit(*args: Any, **kwargs: Any) -> None:
        announced_before_push.append(not out.announced.empty())
        commit(*args, **kwargs)

    monkeypatch.setattr(fake, "create_commit", create_commit)
    monkeypatch.setattr(hub, "connect", fake.connect)
    ctx = exporter_context(tmp_path, every_records=N, hub=HUB, hf_token="hf_secret")
    out = Outputs(ctx.broker)
    register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        bodies = [completed_event(i)[1] for i in range(N)]
        await broker.publish_batch(*bodies, topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    assert fake.tokens == ["hf_secret"] * (len(failures) + 1)
    assert announced_before_push == [False] * (len(failures) + 1)
    assert [message for message, _ in fake.commits] == ["Loopline support/sft v1"]
    pushed = json.loads(fake.files["my-org/support"]["sft/v1/manifest.json"])
    assert sum(pushed["rows"].values()) == N
    assert (event.version, event.rows) == (1, N)
    assert out.announced.empty()


async def test_a_refusal_from_the_hub_is_not_retried_and_the_version_is_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeHub(failures=[hub_error(401), hub_error(401)])
    monkeypatch.setattr(hub, "connect", fake.connect)
    ctx = exporter_context(tmp_path, every_records=N, hub=HUB, hf_token="hf_wrong")
    out = Outputs(ctx.broker)
    register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        bodies = [completed_event(i)[1] for i in range(N)]
        await broker.publish_batch(*bodies, topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    assert fake.tokens == ["hf_wrong"] and fake.commits == []  # one attempt
    assert (event.version, event.rows) == (1, N)


async def test_a_version_a_crash_left_unannounced_is_announced_at_the_next_start_once(
    tmp_path: Path,
) -> None:
    first = exporter_context(tmp_path, every_records=N)
    settings, flows = first.settings, first.flows
    published = [completed_event(i) for i in range(N)]
    with ExportStore(store_path(settings, "support")) as store:
        kept = [
            accept(flows, RECORDS_COMPLETED, 0, i, body) for i, (_, body) in enumerate(published)
        ]
        store.add([k[1] for k in kept if k is not None], ["sft"])
    # The version is written; the process dies before it is announced.
    [result] = export_now(settings, flows, "support", flows.get("support").export.formats)
    assert result.created and result.version == 1

    out = Outputs(first.broker)
    register(first)  # the restart
    async with TestKafkaBroker(first.broker):
        event = await out.next_announcement()
        await close(first)
    assert (event.version, event.rows, event.location) == (1, N, str(result.path))
    assert out.announced.empty()

    again = exporter_context(tmp_path, every_records=N)
    out_again = Outputs(again.broker)
    register(again)  # another restart: nothing left to announce
    async with TestKafkaBroker(again.broker):
        await close(again)
    assert out_again.announced.empty()
