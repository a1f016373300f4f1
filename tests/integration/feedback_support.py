"""Helpers of the feedback collector's integration tests: the Argilla side of the scenario
(a dataset, records, annotators answering through the REST API) and what to compare."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import argilla as rg
import httpx
import pytest

import devstack as stack
from shared.events import AnnotatorResponse, CandidateResponse, Record
from shared.flows import FlowsConfig
from shared.settings import Settings
from tests.support.service_helpers import create_annotators

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


def setup_argilla(local_stack: stack.StackConfig, suffix: str) -> tuple[Any, ...]:
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
        for letter in "ABCDEFG"
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


def as_user(api_url: str, api_key: str) -> httpx.AsyncClient:
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
    async with as_user(api_url, scenario.annotators[annotator]) as client:
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
    async with as_user(scenario.settings.argilla.api_url, scenario.annotators[annotator]) as client:
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


def hooks_for(scenario: Scenario) -> list[Any]:
    return [h for h in scenario.owner.webhooks.list() if h.url == scenario.webhook_url]


async def wait_for_webhook(scenario: Scenario, within_s: float = 30) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        hooks = await asyncio.to_thread(hooks_for, scenario)
        if hooks and hooks[0].enabled:
            return hooks[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"no enabled webhook for {scenario.webhook_url} within {within_s} s")


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not any(text in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, f"no log line with {text!r} within {within_s} s"
        await asyncio.sleep(0.1)


def owner_responds(scenario: Scenario, record_id: str, rating: int) -> str:
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
