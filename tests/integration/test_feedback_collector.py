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
from typing import Any

import httpx
import pytest

import devstack as stack
from services.feedback_collector.app import SERVICE
from services.feedback_collector.signatures import sign
from services.feedback_collector.state import STATE_TOPIC
from shared.events import (
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    AnnotatorResponse,
    CompletedRecord,
)
from shared.flows import parse_flows
from shared.settings import Settings
from shared.topic_reader import read_to_end
from tests.integration.feedback_support import (
    Scenario,
    answer,
    answers,
    as_user,
    hooks_for,
    owner_responds,
    respond,
    setup_argilla,
    update_response,
    wait_for_log,
    wait_for_webhook,
)
from tests.support.service_helpers import (
    read_events,
    running_service,
    with_argilla_and_collector,
)


@pytest.fixture(scope="module")
async def scenario(local_stack: stack.StackConfig, settings: Settings) -> Scenario:
    suffix = uuid.uuid4().hex[:8]
    owner, dataset, records, annotators = await asyncio.to_thread(
        setup_argilla, local_stack, suffix
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
    async with as_user(local_stack.argilla_url, next(iter(annotators.values()))) as annotator:
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


@pytest.fixture
async def collector(scenario: Scenario, caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """The collector, once its webhook is registered and its startup reconciliation is done:
    with the next pass 10 minutes away, whatever comes out next came through a webhook."""
    caplog.set_level(logging.INFO, logger="loopline.feedback_collector")
    async with running_service(SERVICE, scenario.settings, scenario.flows):
        await wait_for_webhook(scenario)
        await wait_for_log(caplog, "reconciled")
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
    [hook] = await asyncio.to_thread(hooks_for, scenario)
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
        for hook in hooks_for(scenario):
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
        hooks = await asyncio.to_thread(hooks_for, scenario)
        assert len(hooks) == 1 and hooks[0].enabled

        # A response the owner writes with `records.log` fires no webhook: the next periodic
        # pass brings it out.
        owner = await asyncio.to_thread(owner_responds, scenario, f, 5)
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


def _passes(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("reconciled ") for r in caplog.records)


async def _after_passes(caplog: pytest.LogCaptureFixture, more: int, within_s: float = 60) -> None:
    target = _passes(caplog) + more
    deadline = time.monotonic() + within_s
    while _passes(caplog) < target:
        assert time.monotonic() < deadline, f"fewer than {more} reconciliation passes"
        await asyncio.sleep(0.2)


async def _state(scenario: Scenario) -> dict[str, Any]:
    """The collector's state topic, the last value of each key."""
    found: dict[str, Any] = {}
    async for messages in read_to_end(scenario.settings.kafka, [STATE_TOPIC]):
        for message in messages:
            found[(message.key or b"").decode()] = json.loads(message.value or b"null")
    return found


async def test_a_restart_resumes_from_the_state_topic_and_announces_nothing_again(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    (g,) = _ids(scenario, "G")
    ann1, ann2 = sorted(scenario.annotators)
    kafka = scenario.settings.kafka
    quick = scenario.settings.model_copy(
        update={
            "feedback": scenario.settings.feedback.model_copy(update={"reconcile_interval_s": 1})
        }
    )
    caplog.set_level(logging.INFO, logger="loopline.feedback_collector")

    async with running_service(SERVICE, quick, scenario.flows):
        await wait_for_webhook(scenario)
        await respond(scenario, ann1, g, "submitted", {"rating": 5})
        await respond(scenario, ann2, g, "submitted", {"rating": 4})
        first = await read_events(
            kafka,
            RECORDS_COMPLETED,
            CompletedRecord,
            lambda ev: ev.record_id == g,
            bool,
        )
        # Its webhooks (response.created twice, record.completed) and the passes since: once.
        await _after_passes(caplog, 2)
    state = await _state(scenario)
    dataset_id = str(scenario.dataset.id)
    assert f"progress/{dataset_id}" in state
    assert state[f"completed/{dataset_id}/{g}"]["outcome"] == "sent"

    # Restarted: the first pass reads G again (its answers are newer than the progress minus the
    # overlap), and any late delivery of its webhooks arrives: neither announces it again.
    async with running_service(SERVICE, quick, scenario.flows):
        await _after_passes(caplog, 2)
    completed = await read_events(
        kafka, RECORDS_COMPLETED, CompletedRecord, lambda ev: ev.record_id == g, bool
    )
    assert len(first) == len(completed) == 1, [c.responses for c in completed]
    assert answers(completed[0].responses) == {
        answer(g, ann1, "submitted", rating=5),
        answer(g, ann2, "submitted", rating=4),
    }
    responses = await read_events(
        kafka, FEEDBACK_RESPONSES, AnnotatorResponse, lambda ev: ev.record_id == g, bool
    )
    assert answers(responses) == {
        answer(g, ann1, "submitted", rating=5),
        answer(g, ann2, "submitted", rating=4),
    }
