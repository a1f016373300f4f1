"""Bot annotators on the real Argilla: real annotator users answering through REST.

A `preference` dataset (made from the template, as the publisher makes it) gets a few judged
records; two `agree` bots answer until nothing is pending. Their responses are stored in
Argilla under their own users, and, because they answered as annotators through the API the
UI uses, Argilla's webhooks carry them to the feedback collector. A split `curation` flow's
annotators are created with `loopline annotators add` (their printed logins work) and
answered with `loopline annotate`, each only in their own workspace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import argilla as rg
import httpx
import pytest
import yaml
from typer.testing import CliRunner

import devstack as stack
from cli.app import app
from devstack.annotators.agree import AgreePolicy
from devstack.annotators.answers import EDIT_SENTENCE
from devstack.annotators.runner import RunOptions, annotate_flow
from devstack.sample_records import record
from services.feedback_collector.app import SERVICE as COLLECTOR
from shared.events import (
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    AnnotatorResponse,
    CompletedRecord,
    Record,
)
from shared.flows import parse_flows
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import Settings
from tests.support.service_helpers import read_events, running_service, with_argilla_and_collector

RUN = uuid.uuid4().hex[:6]
API_KEY = "X-Argilla-Api-Key"


def publish(
    local_stack: stack.StackConfig,
    workspace: str,
    dataset: str,
    template_name: str,
    records: list[Record],
    min_submitted: int = 1,
) -> None:
    """The dataset made from the template and the records logged into it, as the owner."""
    owner = rg.Argilla(
        api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key.get_secret_value()
    )
    template = PluginRegistry().build(PluginKind.templates, template_name, {})
    if owner.workspaces(workspace) is None:
        rg.Workspace(name=workspace, client=owner).create()
    created = rg.Dataset(
        name=dataset,
        workspace=workspace,
        settings=template.settings(min_submitted),
        client=owner,
    ).create()
    created.records.log([template.to_record(r) for r in records])


def listing(local_stack: stack.StackConfig, workspace: str, dataset: str) -> list[dict[str, Any]]:
    """Every record of a dataset with everyone's responses, as the owner reads it."""
    headers = {API_KEY: local_stack.argilla_api_key.get_secret_value()}
    with httpx.Client(base_url=local_stack.argilla_url, headers=headers, timeout=30) as owner:
        spaces = owner.get("/api/v1/me/workspaces").json()["items"]
        space = next(w["id"] for w in spaces if w["name"] == workspace)
        found = owner.get("/api/v1/me/datasets", params={"workspace_id": space}).json()["items"]
        dataset_id = next(d["id"] for d in found if d["name"] == dataset)
        page = owner.get(
            f"/api/v1/datasets/{dataset_id}/records",
            params={"include": "responses", "limit": 1000},
        )
        page.raise_for_status()
        records: list[dict[str, Any]] = page.json()["items"]
        return records


def user_ids(local_stack: stack.StackConfig) -> dict[str, str]:
    headers = {API_KEY: local_stack.argilla_api_key.get_secret_value()}
    with httpx.Client(base_url=local_stack.argilla_url, headers=headers, timeout=30) as owner:
        return {u["username"]: u["id"] for u in owner.get("/api/v1/users").json()["items"]}


@pytest.fixture
async def collector_settings(
    local_stack: stack.StackConfig, settings: Settings, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[Settings, str, list[Record]]]:
    """A published preference dataset and the feedback collector listening to its webhook
    (its startup reconciliation done, the next one 10 minutes away)."""
    flow = f"bots-{RUN}"
    records = [
        record(
            f"Question {i}: reverse a string?",
            flow=flow,
            judge_scores=(2.0, 5.0),
            record_id=f"{flow}-{i}",
        )
        for i in range(4)
    ]
    await asyncio.to_thread(
        publish, local_stack, local_stack.argilla_workspace, flow, "preference", records, 2
    )
    collector = with_argilla_and_collector(settings, local_stack)
    flows = parse_flows(
        {"flows": {flow: {"publish": {"plugin": "preference", "min_submitted": 2}}}}, "bots"
    )
    caplog.set_level(logging.INFO, logger="loopline.feedback_collector")
    async with running_service(COLLECTOR, collector, flows):
        deadline = time.monotonic() + 60
        while not any("reconciled" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the collector did not reconcile within 60 s"
            await asyncio.sleep(0.2)
        yield collector, flow, records


async def test_two_agree_bots_answer_every_record_as_annotators(
    local_stack: stack.StackConfig, collector_settings: tuple[Settings, str, list[Record]]
) -> None:
    settings, flow, records = collector_settings
    chosen = parse_flows(
        {"flows": {flow: {"publish": {"plugin": "preference", "min_submitted": 2}}}}, "bots"
    ).flows[flow]
    report = await annotate_flow(
        settings.argilla, flow, chosen, AgreePolicy(), bots=2, options=RunOptions(idle_timeout_s=0)
    )
    bots = [f"bot-{flow}-1", f"bot-{flow}-2"]
    assert report.stopped == "no pending records", report
    assert {name: t.submitted for name, t in report.tallies.items()} == {bots[0]: 4, bots[1]: 4}

    # Stored in Argilla, by record and user: both bots submitted the judge's suggestions.
    ids = await asyncio.to_thread(user_ids, local_stack)
    stored = await asyncio.to_thread(listing, local_stack, local_stack.argilla_workspace, flow)
    assert {r["external_id"] for r in stored} == {r.record_id for r in records}
    for item in stored:
        assert item["status"] == "completed"
        by_user = {r["user_id"]: r for r in item["responses"]}
        assert set(by_user) == {ids[bots[0]], ids[bots[1]]}
        for response in by_user.values():
            assert response["status"] == "submitted"
            assert response["values"]["rating_response_1"] == {"value": 2}
            assert response["values"]["rating_response_2"] == {"value": 5}
            assert response["values"]["ranking"]["value"][0]["value"] == "response_2"

    # Argilla's webhooks carried every answer to the feedback collector.
    mine = {r.record_id for r in records}
    wanted = {(rid, bot) for rid in mine for bot in bots}
    heard = await read_events(
        settings.kafka,
        FEEDBACK_RESPONSES,
        AnnotatorResponse,
        lambda event: event.record_id in mine,
        lambda found: wanted <= {(e.record_id, e.annotator) for e in found},
    )
    assert {(e.record_id, e.annotator) for e in heard} == wanted
    completed = await read_events(
        settings.kafka,
        RECORDS_COMPLETED,
        CompletedRecord,
        lambda event: event.record_id in mine,
        lambda found: mine <= {c.record_id for c in found if len(c.responses) == 2},
    )
    assert {c.record_id for c in completed if len(c.responses) == 2} == mine


def test_people_join_a_split_flow_and_bots_answer_in_their_workspaces(
    local_stack: stack.StackConfig, tmp_path: Path
) -> None:
    flow, people = f"split-{RUN}", [f"ann-a-{RUN}", f"ann-b-{RUN}"]
    flows_file = tmp_path / "flows.yaml"
    publish_ref = {"plugin": "curation", "mode": "split", "annotators": people}
    flows_file.write_text(yaml.safe_dump({"flows": {flow: {"publish": publish_ref}}}))
    env = {
        "LOOPLINE_ARGILLA__API_URL": local_stack.argilla_url,
        "LOOPLINE_ARGILLA__API_KEY": local_stack.argilla_api_key.get_secret_value(),
        "LOOPLINE_ARGILLA__WORKSPACE": local_stack.argilla_workspace,
    }
    cli = CliRunner(env=env)
    common = ["--flow", flow, "--flows-file", str(flows_file)]

    added = cli.invoke(app, ["annotators", "add", *common, *people, "--password", "pass-word-1"])
    assert added.exit_code == 0, added.output
    workspaces = [f"{local_stack.argilla_workspace}-{p}" for p in people]
    for person, workspace in zip(people, workspaces, strict=True):
        assert f"{person}  password: pass-word-1  workspace: {workspace}" in added.output
    assert local_stack.argilla_url in added.output
    login = httpx.post(
        f"{local_stack.argilla_url}/api/v1/token",
        data={"username": people[0], "password": "pass-word-1"},
    )
    assert login.status_code == 201, login.text
    outsider = cli.invoke(app, ["annotators", "add", *common, "nobody"])
    assert outsider.exit_code == 2 and "is not one of them" in outsider.output

    shares = {people[0]: ["a1", "a2"], people[1]: ["b1"]}
    for person, workspace in zip(people, workspaces, strict=True):
        texts = (("The answer.", "model-a"),)
        mine = [
            record(f"Say {n}", texts, flow=flow, record_id=f"{flow}-{n}") for n in shares[person]
        ]
        publish(local_stack, workspace, flow, "curation", mine)

    answered = cli.invoke(
        app, ["annotate", *common, "--idle-timeout", "0", "--option", "edit_rate=1"]
    )
    assert answered.exit_code == 0, answered.output
    assert "stopped: no pending records" in answered.output
    ids = user_ids(local_stack)
    for person, workspace in zip(people, workspaces, strict=True):
        stored = listing(local_stack, workspace, flow)
        assert sorted(r["external_id"] for r in stored) == [f"{flow}-{n}" for n in shares[person]]
        for item in stored:
            assert [r["user_id"] for r in item["responses"]] == [ids[person]]
            final = item["responses"][0]["values"]["final_response"]["value"]
            assert final == f"The answer.\n\n{EDIT_SENTENCE}"

    listed = cli.invoke(app, ["annotators", "list", *common])
    assert listed.exit_code == 0, listed.output
    for person, workspace in zip(people, workspaces, strict=True):
        assert f"workspace {workspace}: {person}" in listed.output
