"""`loopline status --json` and `loopline trace --json` against the session stack's broker,
run as a user runs them (a subprocess), with the judge run in this process in a flow set of
its own.

The judge runs, dead-letters records of a flow it does not know (and commits past them), and
stops; then records arrive with no consumer: status reports exactly that many behind, each
partition's share, the dead letters with their reason, the records stuck at `generated`, and,
while the judge ran, its health answer with the last error. `trace` finds a dead-lettered
record's path and its trace in Phoenix."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

import devstack as stack
from devstack.testing import free_port
from services.judge.app import SERVICE as JUDGE
from shared.broker import admin_client_options, ensure_topics
from shared.consumer_lag import consumer_lag
from shared.events import RECORDS_GENERATED, CandidateResponse, Record, dead_letter_topic
from shared.flows import load_flows
from shared.settings import Settings, TelemetrySettings
from tests.support.service_helpers import read_dead_letters, running_service

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLOWS = "flows:\n  support:\n    judge: {plugin: additive}\n"
WAITING = 5  # records produced while the judge is stopped
LETTERS = 3  # records of an unknown flow, dead-lettered while it runs
PHOENIX_WAIT_S = 60.0


def record(record_id: str, flow: str) -> bytes:
    answer = CandidateResponse(text="4", model="app", source="app")
    return Record(record_id=record_id, flow=flow, instruction="2+2?", responses=[answer]).to_bytes()


async def produce(settings: Settings, records: list[tuple[str, bytes]], traceparent: str) -> None:
    producer = AIOKafkaProducer(**admin_client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        topic = settings.kafka.topic(RECORDS_GENERATED)
        for record_id, value in records:
            headers = [("traceparent", traceparent.encode())]
            await producer.send_and_wait(topic, value, key=record_id.encode(), headers=headers)
    finally:
        await producer.stop()


async def loopline(settings: Settings, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `loopline ARGS` in the flow set of `settings`; (exit code, its JSON, stderr).
    A subprocess of this event loop's, so the service running here keeps answering."""
    env = {
        **os.environ,
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "LOOPLINE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "LOOPLINE_KAFKA__GROUP_PREFIX": settings.kafka.group_prefix,
        "LOOPLINE_FLOWS_FILE": str(settings.flows_file),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    document = json.loads(out) if out.strip() else {}
    return process.returncode, document, err.decode()


def stage(report: dict[str, Any], service: str) -> dict[str, Any]:
    return next(row for row in report["stages"] if row["service"] == service)


async def spans_in_phoenix(base: str, trace_id: str) -> int:
    """The spans of `trace_id` in Phoenix's project loopline, once it stored some."""
    deadline = time.monotonic() + PHOENIX_WAIT_S
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while time.monotonic() < deadline:
            answer = await client.get("/v1/projects/loopline/spans", params={"trace_id": trace_id})
            if answer.status_code == 200 and answer.json().get("data"):
                return len(answer.json()["data"])
            await asyncio.sleep(1)
    return 0


async def test_status_reports_the_lag_of_a_stopped_consumer_and_trace_finds_a_record(
    local_stack: stack.StackConfig,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = uuid.uuid4().hex[:8]
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(FLOWS)
    health_port = free_port()
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=loopline")
    ours = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"status-{run}.", "group_prefix": f"status-{run}"}
            ),
            "flows_file": flows_file,
            "health_port": health_port,
            "telemetry": TelemetrySettings(otlp_endpoint=local_stack.phoenix_url),
        }
    )
    health = f"http://127.0.0.1:{health_port}/healthz"
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    lost = [(f"lost-{run}-{i}", record(f"lost-{run}-{i}", "nowhere")) for i in range(LETTERS)]
    waiting = [(f"wait-{run}-{i}", record(f"wait-{run}-{i}", "support")) for i in range(WAITING)]
    group = f"status-{run}-judge"

    async with running_service(JUDGE, ours, load_flows(flows_file)):
        await produce(ours, lost, traceparent)
        letters = await read_dead_letters(
            ours.kafka, ours.kafka.topic(RECORDS_GENERATED), {r for r, _ in lost}
        )
        assert len(letters) == LETTERS
        deadline = time.monotonic() + 30
        while sum((await consumer_lag(ours.kafka, group, [RECORDS_GENERATED])).values()):
            assert time.monotonic() < deadline, "the judge did not commit past its dead letters"
            await asyncio.sleep(0.5)
        code, running, err = await loopline(
            ours, "status", "--json", "--window", "0.5", "--since", "1h", "--health", health
        )
        assert code == 0, err
        judge = stage(running, "judge")
        assert judge["lag"] == 0
        assert judge["health"]["reachable"] is True
        assert judge["health"]["status"] == "ok"
        assert (
            "'nowhere' is not in this service's flow file" in judge["health"]["last_error"]["error"]
        )

    await ensure_topics(ours.kafka, [RECORDS_GENERATED])
    await produce(ours, waiting, traceparent)
    code, report, err = await loopline(
        ours,
        "status",
        "--json",
        "--window",
        "0.5",
        "--since",
        "1h",
        "--stuck-after",
        "0",
        "--health",
        f"judge={health}",
    )
    assert code == 0, err

    judge = stage(report, "judge")
    assert judge["group"] == group
    assert judge["topics"] == [ours.kafka.topic(RECORDS_GENERATED)]
    assert judge["lag"] == WAITING
    assert len(judge["partitions"]) == ours.kafka.topic_partitions
    assert sum(p["lag"] for p in judge["partitions"]) == WAITING
    assert sum(p["committed"] or 0 for p in judge["partitions"]) == LETTERS
    assert judge["consumed_per_s"] == 0
    assert judge["health"]["reachable"] is False  # stopped
    assert judge["health"]["error"]

    [dead] = [d for d in report["dead_letters"] if d["messages"]]
    assert dead["topic"] == ours.kafka.topic(dead_letter_topic(RECORDS_GENERATED))
    assert dead["messages"] == LETTERS
    assert dead["latest"]["service"] == "judge"
    assert "'nowhere' is not in this service's flow file" in dead["latest"]["error"]

    records = report["records"]
    [support] = records["flows"]
    assert support["flow"] == "support"
    assert support["stages"]["generated"] is None  # no generation in the flow
    assert support["stages"]["ingested"]["reached"] == WAITING  # landed on records.generated
    assert support["stages"]["ingested"]["stuck"] == WAITING  # the judge is not there
    assert support["stuck"] == WAITING
    assert records["unknown_flows"] == {"nowhere": LETTERS}

    # trace: a dead-lettered record's path, and its trace in Phoenix.
    assert await spans_in_phoenix(local_stack.phoenix_url, trace_id) > 0
    lost_id = lost[0][0]
    code, path, err = await loopline(
        ours, "trace", lost_id, "--json", "--since", "1h", "--viewer", local_stack.phoenix_url
    )
    assert code == 0, err
    assert [(s["topic"], s["service"]) for s in path["steps"]] == [
        ("records.generated", "generator"),
        ("records.generated.dlq", "judge"),
    ]
    assert "is not in this service's flow file" in path["steps"][1]["outcome"]
    assert path["trace_ids"] == [trace_id]
    assert path["trace"]["url"].startswith(f"{local_stack.phoenix_url}/projects/")
    assert path["trace"]["url"].endswith(f"/traces/{trace_id}")
    assert path["trace"]["spans"] > 0
