"""The feedback collector against the real stack: Argilla's webhooks and worker, Tansu.

Annotators respond through Argilla's REST API with their own keys (as the UI does); the
collector must turn that into events on `feedback.responses` and `records.completed`, verify
signatures, and catch up by reconciliation on what happened while it was down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import argilla as rg
import httpx
import pytest
from pydantic import BaseModel

import devstack as stack
from services.feedback_collector.app import SERVICE
from services.feedback_collector.signatures import sign
from shared.events import (
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    AnnotatorResponse,
    CandidateResponse,
    CompletedRecord,
    Record,
)
from shared.flows import FlowsConfig, parse_flows
from shared.settings import Settings
from tests.support.service_helpers import (
    create_annotators,
    read_events,
    running_service,
    with_argilla_and_collector,
)

EventT = TypeVar("EventT", bound=BaseModel)
API_KEY = "X-Argilla-Api-Key"


@dataclass
class Scenario:
    settings: Settings
    flows: FlowsConfig
    owner: rg.Argilla
    dataset: Any  # rg.Dataset
    records: dict[str, Record]  # by Loopline record id
    argilla_ids: dict[str, str]  # Loopline record id -> Argilla record id
    annotators: dict[str, str]  # username -> API key

    @property
    def name(self) -> str:
        return str(self.dataset.name)

    @property
    def webhook_url(self) -> str:
        return self.settings.feedback.public_url


def _loopline_record(record_id: str, question: str) -> Record:
    return Record(
        record_id=record_id,
        flow="feedback-test",
        instruction=question,
        responses=[
            CandidateResponse(text="Paris.", model="m-a", source="app"),
            CandidateResponse(text="Lyon, I think.", model="m-b"),
        ],
        metadata={"tenant": "acme"},
        tags=["integration"],
    )


def _setup_argilla(local_stack: stack.StackConfig, suffix: str) -> tuple[Any, ...]:
    """Dataset, records and two annotators, created as the owner with the SDK."""
    owner = rg.Argilla(
        api_url=local_stack.argilla_url,
        api_key=local_stack.argilla_api_key.get_secret_value(),
    )
    workspace = owner.workspaces(local_stack.argilla_workspace)
    dataset_settings = rg.Settings(
        fields=[rg.TextField(name="prompt"), rg.TextField(name="answer")],
        questions=[
            rg.RatingQuestion(name="rating", values=[1, 2, 3, 4, 5]),
            rg.TextQuestion(name="comment", required=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=2),
        allow_extra_metadata=True,
    )
    dataset = rg.Dataset(
        name=f"feedback-{suffix}",
        workspace=workspace,
        settings=dataset_settings,
        client=owner,
    ).create()
    records = {
        rid: _loopline_record(rid, f"What is the capital of France? ({letter})")
        for letter in "ABCDEF"
        for rid in [f"fb-{suffix}-{letter}"]
    }
    dataset.records.log(
        [
            rg.Record(
                id=rid,
                fields={"prompt": rec.instruction or "", "answer": rec.responses[0].text},
                metadata={"loopline_record": rec.model_dump_json()},
            )
            for rid, rec in records.items()
        ]
    )
    annotators = create_annotators(owner, workspace, [f"ann{n}-{suffix}" for n in (1, 2)])
    return owner, dataset, records, annotators


@pytest.fixture(scope="module")
async def scenario(local_stack: stack.StackConfig, settings: Settings) -> Scenario:
    suffix = uuid.uuid4().hex[:8]
    owner, dataset, records, annotators = await asyncio.to_thread(
        _setup_argilla, local_stack, suffix
    )
    collector_settings = with_argilla_and_collector(settings, local_stack)
    flows = parse_flows(
        {
            "flows": {
                "feedback-test": {
                    "publish": {"plugin": "preference", "dataset": dataset.name, "min_submitted": 2}
                }
            }
        },
        "feedback test flows",
    )
    # Argilla ids, as an annotator finds them: their own view of the dataset, through REST.
    argilla_ids: dict[str, str] = {}
    async with _as(local_stack.argilla_url, next(iter(annotators.values()))) as annotator:
        found = await annotator.post(
            f"/api/v1/me/datasets/{dataset.id}/records/search",
            params={"limit": 100},
            json={},
        )
        found.raise_for_status()
        for item in found.json()["items"]:
            argilla_ids[item["record"]["external_id"]] = item["record"]["id"]
    assert set(argilla_ids) == set(records)
    return Scenario(collector_settings, flows, owner, dataset, records, argilla_ids, annotators)


def _as(api_url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api_url, headers={API_KEY: api_key}, timeout=30)


async def respond(
    scenario: Scenario,
    annotator: str,
    record_id: str,
    status: str,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An annotator's response through Argilla's REST API, with the annotator's own key."""
    body = {
        "status": status,
        # A discarded response with `values: null` breaks Argilla: send `{}`.
        "values": {q: {"value": v} for q, v in (values or {}).items()},
    }
    api_url = scenario.settings.argilla.api_url
    async with _as(api_url, scenario.annotators[annotator]) as client:
        answer = await client.post(
            f"/api/v1/records/{scenario.argilla_ids[record_id]}/responses", json=body
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created


async def update_response(
    scenario: Scenario, annotator: str, response_id: str, values: dict[str, Any]
) -> None:
    body = {"status": "submitted", "values": {q: {"value": v} for q, v in values.items()}}
    async with _as(scenario.settings.argilla.api_url, scenario.annotators[annotator]) as client:
        answer = await client.put(f"/api/v1/responses/{response_id}", json=body)
        assert answer.status_code == 200, answer.text


def answers(events: list[AnnotatorResponse]) -> set[tuple[str, str, str, str]]:
    """(record, annotator, status, values) of each response, duplicates folded."""
    return {
        (e.record_id, e.annotator, e.status.value, json.dumps(e.values, sort_keys=True))
        for e in events
    }


def answer(record: str, annotator: str, status: str, **values: Any) -> tuple[str, str, str, str]:
    return (record, annotator, status, json.dumps(values, sort_keys=True))


def _hooks_for(scenario: Scenario) -> list[Any]:
    return [h for h in scenario.owner.webhooks.list() if h.url == scenario.webhook_url]


async def _wait_for_webhook(scenario: Scenario, within_s: float = 30) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        hooks = await asyncio.to_thread(_hooks_for, scenario)
        if hooks and hooks[0].enabled:
            return hooks[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"no enabled webhook for {scenario.webhook_url} within {within_s} s")


async def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"no log line with {text!r} within {within_s} s"
        await asyncio.sleep(0.1)


@pytest.fixture
async def collector(scenario: Scenario, caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """The collector, once its webhook is registered and its startup reconciliation is done:
    with the next pass 10 minutes away, whatever comes out next came through a webhook."""
    caplog.set_level(logging.INFO, logger="loopline.feedback_collector")
    async with running_service(SERVICE, scenario.settings, scenario.flows):
        await _wait_for_webhook(scenario)
        await _wait_for_log(caplog, "reconciled")
        yield


def _ids(scenario: Scenario, *letters: str) -> list[str]:
    return [next(r for r in scenario.records if r.endswith(f"-{x}")) for x in letters]


async def test_responses_and_completions_flow_out_of_argilla(
    scenario: Scenario, collector: None
) -> None:
    a, b, e = _ids(scenario, *"ABE")
    ann1, ann2 = sorted(scenario.annotators)
    kafka = scenario.settings.kafka
    mine = set(scenario.records)

    first = await respond(scenario, ann1, a, "submitted", {"rating": 4, "comment": "good"})
    await respond(scenario, ann2, a, "submitted", {"rating": 2})
    await respond(scenario, ann2, b, "discarded")

    expected = {
        answer(a, ann1, "submitted", rating=4, comment="good"),
        answer(a, ann2, "submitted", rating=2),
        answer(b, ann2, "discarded"),
    }
    responses = await read_events(
        kafka,
        FEEDBACK_RESPONSES,
        AnnotatorResponse,
        lambda ev: ev.record_id in mine,
        lambda found: expected <= answers(found),
    )
    assert answers(responses) == expected
    assert all(ev.dataset == scenario.name for ev in responses)
    assert all(ev.responded_at.tzinfo is not None for ev in responses)

    completed = await read_events(
        kafka,
        RECORDS_COMPLETED,
        CompletedRecord,
        lambda ev: ev.record_id in mine,
        lambda found: any(len(c.responses) == 2 for c in found),
    )
    assert completed, "record A was submitted twice but no CompletedRecord came out"
    assert {c.record_id for c in completed} == {a}
    done = next(c for c in completed if len(c.responses) == 2)
    assert done.record == scenario.records[a]  # rebuilt from the loopline_record metadata
    assert done.dataset == scenario.name
    assert answers(done.responses) == {
        answer(a, ann1, "submitted", rating=4, comment="good"),
        answer(a, ann2, "submitted", rating=2),
    }

    # An update fires response.updated, and record.completed again with the current responses.
    await update_response(scenario, ann1, first["id"], {"rating": 3})
    updated = answer(a, ann1, "submitted", rating=3)
    responses = await read_events(
        kafka,
        FEEDBACK_RESPONSES,
        AnnotatorResponse,
        lambda ev: ev.record_id == a,
        lambda found: updated in answers(found),
    )
    assert updated in answers(responses)
    completed = await read_events(
        kafka,
        RECORDS_COMPLETED,
        CompletedRecord,
        lambda ev: ev.record_id == a,
        lambda found: any(updated in answers(c.responses) for c in found),
    )
    assert any(updated in answers(c.responses) for c in completed)

    # Nobody ever responds to record E: whatever the forgeries below claim, nothing is emitted.
    await _forgeries_are_refused(scenario, e, ann1)


async def _forgeries_are_refused(scenario: Scenario, record_id: str, annotator: str) -> None:
    payload = {
        "type": "response.created",
        "version": 1,
        "timestamp": "2025-01-01T00:00:00.000000Z",
        "data": {
            "id": str(uuid.uuid4()),
            "values": {"rating": {"value": 1}},
            "status": "submitted",
            "record": {
                "id": scenario.argilla_ids[record_id],
                "status": "pending",
                "external_id": record_id,
                "metadata": {},
                "dataset": {
                    "id": str(scenario.dataset.id),
                    "name": scenario.name,
                    "workspace": {"id": str(uuid.uuid4()), "name": "admin"},
                },
                "updated_at": "2025-01-01T00:00:00",
            },
            "user": {"id": str(uuid.uuid4()), "username": annotator},
            "updated_at": "2025-01-01T00:00:00",
        },
    }
    body = json.dumps(payload).encode()
    [hook] = await asyncio.to_thread(_hooks_for, scenario)
    forged_secret = "d2hhdGV2ZXItaXMtbm90LXRoZS1zZWNyZXQtMTIzNDU2"
    now = int(time.time())
    attempts = {
        "forged": (forged_secret, now),
        "stale": (str(hook.secret), now - 600),  # right secret, replayed 10 minutes later
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for kind, (secret, stamp) in attempts.items():
            reply = await client.post(
                scenario.webhook_url,
                content=body,
                headers={
                    "webhook-id": f"msg_{kind}",
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": sign(secret, f"msg_{kind}", stamp, body),
                    "content-type": "application/json",
                },
            )
            assert reply.status_code == 401, (kind, reply.text)
            assert "signature verification failed" in reply.json()["detail"]
        unsigned = await client.post(scenario.webhook_url, content=body)
        assert unsigned.status_code == 401
        assert "missing header 'webhook-id'" in unsigned.json()["detail"]
    emitted = await read_events(
        scenario.settings.kafka,
        FEEDBACK_RESPONSES,
        AnnotatorResponse,
        lambda ev: ev.record_id == record_id,
        lambda found: False,
        within_s=3,
    )
    assert emitted == []


async def test_reconciliation_catches_up_after_downtime(scenario: Scenario) -> None:
    b, c, d, f = _ids(scenario, *"BCDF")
    ann1, ann2 = sorted(scenario.annotators)
    kafka = scenario.settings.kafka

    # The collector is down. Its webhook is disabled too, so no delivery retry can reach the
    # next instance: only reconciliation can bring these responses out.
    def disable() -> None:
        for hook in _hooks_for(scenario):
            hook.enabled = False
            hook.update()

    await asyncio.to_thread(disable)
    await respond(scenario, ann1, b, "submitted", {"rating": 5})
    await respond(scenario, ann1, c, "submitted", {"rating": 1, "comment": "wrong city"})
    await respond(scenario, ann2, c, "submitted", {"rating": 2})
    await respond(scenario, ann2, d, "draft", {"rating": 3})

    expected = {
        answer(b, ann1, "submitted", rating=5),
        answer(c, ann1, "submitted", rating=1, comment="wrong city"),
        answer(c, ann2, "submitted", rating=2),
        answer(d, ann2, "draft", rating=3),
    }
    # Same address (the webhook is reused), but frequent passes for the owner's step below.
    quick = scenario.settings.model_copy(
        update={
            "feedback": scenario.settings.feedback.model_copy(update={"reconcile_interval_s": 2})
        }
    )
    async with running_service(SERVICE, quick, scenario.flows):
        responses = await read_events(
            kafka,
            FEEDBACK_RESPONSES,
            AnnotatorResponse,
            lambda ev: ev.record_id in {b, c, d},
            lambda found: expected <= answers(found),
        )
        assert expected <= answers(responses)
        completed = await read_events(
            kafka,
            RECORDS_COMPLETED,
            CompletedRecord,
            lambda ev: ev.record_id == c,
            lambda found: bool(found),
        )
        assert completed, "record C was completed while the collector was down"
        assert completed[0].record == scenario.records[c]
        assert answers(completed[0].responses) == {
            answer(c, ann1, "submitted", rating=1, comment="wrong city"),
            answer(c, ann2, "submitted", rating=2),
        }
        # The restarted collector reused its webhook (enabled again), it did not add one.
        hooks = await asyncio.to_thread(_hooks_for, scenario)
        assert len(hooks) == 1 and hooks[0].enabled

        # A response the owner writes with `records.log` fires no webhook: the next periodic
        # pass brings it out.
        owner = await asyncio.to_thread(_owner_responds, scenario, f, 5)
        by_owner = answer(f, owner, "submitted", rating=5)
        responses = await read_events(
            kafka,
            FEEDBACK_RESPONSES,
            AnnotatorResponse,
            lambda ev: ev.record_id == f,
            lambda found: by_owner in answers(found),
            within_s=20,
        )
        assert answers(responses) == {by_owner}


def _owner_responds(scenario: Scenario, record_id: str, rating: int) -> str:
    """A submitted response by the owner, logged in bulk with the record (no webhook fires)."""
    me = scenario.owner.me
    record = scenario.records[record_id]
    scenario.dataset.records.log(
        [
            rg.Record(
                id=record_id,
                fields={"prompt": record.instruction or "", "answer": record.responses[0].text},
                metadata={"loopline_record": record.model_dump_json()},
                responses=[
                    rg.Response("rating", rating, user_id=me.id, status="submitted"),
                ],
            )
        ]
    )
    return str(me.username)
