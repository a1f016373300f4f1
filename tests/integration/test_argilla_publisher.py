"""The argilla-publisher against the real Argilla server and broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import argilla as rg
import httpx
import pytest

import devstack as stack
from devstack.process import read_pid_file, stop_groups
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.argilla_publisher.targets import SettingsDriftError, split_index
from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, PublishedRecord, Record
from shared.flows import FlowsConfig, parse_flows
from shared.settings import ArgillaSettings, Settings
from tests.support.service_helpers import produce, running_service

ANNOTATORS = ("ann-a", "ann-b", "ann-c")
RUN = uuid.uuid4().hex[:6]


def flows() -> FlowsConfig:
    return parse_flows(
        {
            "flows": {
                "pub-pref": {
                    "publish": {
                        "plugin": "preference",
                        "dataset": f"pref-{RUN}",
                        "min_submitted": 2,
                        "flush_interval_s": 0.5,
                    },
                },
                "pub-gone": {
                    "publish": {
                        "plugin": "preference",
                        "dataset": f"gone-{RUN}",
                        "flush_interval_s": 0.5,
                    },
                },
                "pub-split": {
                    "publish": {
                        "plugin": "sft-demonstration",
                        "dataset": f"split-{RUN}",
                        "mode": "split",
                        "annotators": list(ANNOTATORS),
                        "workspace": f"ws{RUN}",
                        "flush_interval_s": 0.5,
                    },
                },
            }
        },
        "test flows",
    )


@pytest.fixture(scope="module")
def client(local_stack: stack.StackConfig) -> rg.Argilla:
    return rg.Argilla(
        api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key.get_secret_value()
    )


@pytest.fixture(scope="module")
def annotators(client: rg.Argilla) -> dict[str, str]:
    """username -> API key of annotator users created for the test."""
    keys = {}
    for name in ANNOTATORS:
        user = (
            client.users(name)
            or rg.User(
                username=name, password="annotator-pass", role="annotator", client=client
            ).create()
        )
        # The SDK's user model drops the key; the owner reads it from the REST API.
        fetched = client.http_client.get(f"/api/v1/users/{user.id}")
        fetched.raise_for_status()
        keys[name] = fetched.json()["api_key"]
    return keys


@pytest.fixture(scope="module")
async def publisher(
    settings: Settings, local_stack: stack.StackConfig, annotators: dict[str, str]
) -> AsyncIterator[Settings]:
    argilla = ArgillaSettings(api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key)
    kafka = settings.kafka.model_copy(update={"group_prefix": f"pub-{RUN}"})
    run_settings = settings.model_copy(update={"argilla": argilla, "kafka": kafka})
    async with running_service(PUBLISHER, run_settings, flows()):
        yield run_settings


def judged(flow: str, i: int, **extra: Any) -> Record:
    return Record.model_validate(
        {
            "record_id": f"{flow}-{RUN}-{i}",
            "flow": flow,
            "instruction": f"Reverse a list in Python ({i})",
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
            **extra,
        }
    )


def records_in(client: rg.Argilla, name: str, workspace: str) -> list[Any]:
    dataset = client.datasets(name, workspace=workspace)
    assert dataset is not None, f"{workspace}/{name} missing"
    return list(dataset.records(with_suggestions=True))


async def test_records_land_with_suggestions_and_events(
    publisher: Settings, client: rg.Argilla
) -> None:
    batch = [judged("pub-pref", i) for i in range(3)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in batch])
    ids = {r.record_id for r in batch}
    events = await read_published(publisher, ids)
    assert {e.dataset for e in events} == {f"pref-{RUN}"}
    found = records_in(client, f"pref-{RUN}", "admin")
    assert {r.id for r in found} == ids
    suggestions = {s.question_name: s for s in found[0].suggestions}
    assert suggestions, "judge scores must come in as suggestions"
    assert all(s.agent == "judge-m" for s in suggestions.values())


async def read_published(
    publisher: Settings, ids: set[str], at_least: int = 1
) -> list[PublishedRecord]:
    """The newest announcement of each of `ids`, once each was announced `at_least` times."""
    from aiokafka import AIOKafkaConsumer

    from shared.broker import admin_client_options

    consumer = AIOKafkaConsumer(
        RECORDS_PUBLISHED,
        **admin_client_options(publisher.kafka),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: dict[str, PublishedRecord] = {}
    times: Counter[str] = Counter()

    def done() -> set[str]:
        return {i for i in ids if times[i] >= at_least}

    try:
        deadline = asyncio.get_running_loop().time() + 60
        while done() < ids and asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                for m in messages:
                    event = PublishedRecord.model_validate_json(m.value or b"")
                    if event.record_id in ids:
                        found[event.record_id] = event
                        times[event.record_id] += 1
    finally:
        await consumer.stop()
    assert done() == ids, times
    return list(found.values())


async def test_redelivery_updates_instead_of_duplicating(
    publisher: Settings, client: rg.Argilla
) -> None:
    first = judged("pub-pref", 100)
    again = judged("pub-pref", 100, tags=["redelivered"])
    await produce(publisher.kafka, RECORDS_JUDGED, [first.to_bytes(), again.to_bytes()])
    await read_published(publisher, {first.record_id})
    await asyncio.sleep(2)
    matching = [r for r in records_in(client, f"pref-{RUN}", "admin") if r.id == first.record_id]
    assert len(matching) == 1


async def test_split_mode_gives_each_annotator_a_disjoint_share_by_record_id(
    publisher: Settings,
    client: rg.Argilla,
    annotators: dict[str, str],
    local_stack: stack.StackConfig,
) -> None:
    batch = [judged("pub-split", i) for i in range(30)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in batch])
    await read_published(publisher, {r.record_id for r in batch})
    shares = {
        name: {r.id for r in records_in(client, f"split-{RUN}", f"ws{RUN}-{name}")}
        for name in ANNOTATORS
    }
    assert set().union(*shares.values()) == {r.record_id for r in batch}
    assert sum(len(s) for s in shares.values()) == 30  # disjoint
    for name, share in shares.items():  # the annotator is a function of the record id
        assert all(ANNOTATORS[split_index(i, len(ANNOTATORS))] == name for i in share), share
    # Each annotator sees only their own workspace's dataset.
    async with httpx.AsyncClient(base_url=local_stack.argilla_url) as http:
        for name, key in annotators.items():
            mine = await http.get("/api/v1/me/datasets", headers={"X-Argilla-Api-Key": key})
            mine.raise_for_status()
            workspaces = {d["workspace_id"] for d in mine.json()["items"]}
            own = client.workspaces(f"ws{RUN}-{name}")
            assert own is not None and workspaces == {str(own.id)}


def test_settings_drift_fails_with_the_difference_or_versions(
    publisher: Settings, client: rg.Argilla
) -> None:
    name = f"drift-{RUN}"
    rg.Dataset(
        name=name,
        workspace="admin",
        client=client,
        settings=rg.Settings(
            fields=[rg.TextField(name="other")],
            questions=[rg.LabelQuestion(name="q", labels=["x", "y"])],
        ),
    ).create()
    from services.argilla_publisher.targets import prepare
    from services.argilla_publisher.templates.preference import PreferenceTemplate
    from shared.flows import PublishRef

    with pytest.raises(SettingsDriftError) as caught:
        prepare(
            client,
            "f",
            PublishRef(plugin="preference", dataset=name),
            PreferenceTemplate(),
            "admin",
        )
    assert f"admin/{name}" in str(caught.value) and "field" in str(caught.value).lower()
    publication = prepare(
        client,
        "f",
        PublishRef(plugin="preference", dataset=name, on_settings_change="new_version"),
        PreferenceTemplate(),
        "admin",
    )
    assert publication.targets[0].name == f"{name}-v2"


async def test_argilla_down_mid_stream_loses_nothing(
    publisher: Settings, client: rg.Argilla, local_stack: stack.StackConfig
) -> None:
    pid = read_pid_file(local_stack.run_dir / "argilla.pid")
    assert pid is not None
    stop_groups([pid], timeout_s=10)  # Argilla's server goes away
    batch = [judged("pub-pref", 200 + i) for i in range(5)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in batch])
    await asyncio.sleep(4)  # the publisher is retrying with backoff now
    await asyncio.to_thread(stack.up, local_stack, components=["argilla"])
    await read_published(publisher, {r.record_id for r in batch})
    ids = {r.id for r in records_in(client, f"pref-{RUN}", "admin")}
    assert {r.record_id for r in batch} <= ids


async def test_a_record_annotators_answered_is_not_overwritten(
    publisher: Settings, client: rg.Argilla, local_stack: stack.StackConfig
) -> None:
    first = [judged("pub-pref", 300 + i) for i in range(3)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in first])
    await read_published(publisher, {r.record_id for r in first})
    by_id = {r.id: r for r in records_in(client, f"pref-{RUN}", "admin")}
    answered = {first[0].record_id: "discarded", first[1].record_id: "draft"}
    async with httpx.AsyncClient(base_url=local_stack.argilla_url) as http:
        key = local_stack.argilla_api_key.get_secret_value()
        for record_id, status in answered.items():
            made = await http.post(
                f"/api/v1/records/{by_id[record_id]._server_id}/responses",
                headers={"X-Argilla-Api-Key": key},
                json={"status": status, "values": {}},
            )
            assert made.status_code == 201, made.text
    # The same records generated again: other instructions under the same record ids.
    again = [judged("pub-pref", 300 + i, instruction=f"changed {i}") for i in range(3)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in again])
    await read_published(publisher, {r.record_id for r in again}, at_least=2)
    prompts = {
        r.id: r.fields["prompt"]
        for r in records_in(client, f"pref-{RUN}", "admin")
        if r.id in by_id and r.id in {x.record_id for x in first}
    }
    assert prompts == {
        first[0].record_id: first[0].instruction,  # discarded by an annotator: kept
        first[1].record_id: first[1].instruction,  # a draft answer: kept
        first[2].record_id: "changed 2",  # nobody answered it: updated
    }


async def test_a_deleted_dataset_is_recreated_and_the_records_land(
    publisher: Settings, client: rg.Argilla
) -> None:
    dataset = client.datasets(f"gone-{RUN}", workspace="admin")
    assert dataset is not None
    dataset.delete()  # someone deleted it in Argilla's UI while the publisher runs
    batch = [judged("pub-gone", i) for i in range(4)]
    await produce(publisher.kafka, RECORDS_JUDGED, [r.to_bytes() for r in batch])
    await read_published(publisher, {r.record_id for r in batch})
    assert {r.id for r in records_in(client, f"gone-{RUN}", "admin")} == {
        r.record_id for r in batch
    }
