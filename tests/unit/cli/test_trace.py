"""`loopline trace RECORD_ID` against an in-memory cluster: the record's messages in stage order
with who wrote them and what became of the record, its trace id from `traceparent`, and the
trace's URL in Phoenix (or why there is none)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.output import console
from cli.trace import find_path, trace_link
from shared.dead_letters import H_ATTEMPTS, H_ERROR, H_SERVICE
from shared.events import (
    AnnotatorResponse,
    CompletedRecord,
    Judgment,
    PublishedRecord,
    Rating,
    Record,
)
from shared.flows import parse_flows
from shared.settings import KafkaSettings, Settings
from tests.unit.shared.fake_kafka import FakeCluster

FLOWS_YAML = """flows:
  people:
    generate: [{plugin: openai}]
    judge: {plugin: multi-aspect}
    publish: {plugin: preference, when: {margin_below: 2}}
"""
FLOWS = parse_flows(
    {
        "flows": {
            "people": {
                "generate": [{"plugin": "openai"}],
                "judge": {"plugin": "multi-aspect"},
                "publish": {"plugin": "preference", "when": {"margin_below": 2}},
            }
        }
    },
    "test",
).flows
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()
KAFKA = KafkaSettings(topic_prefix="a.")
runner = CliRunner()
REAL_CLIENT = httpx.Client


def judged(record_id: str, margin: float) -> Record:
    scores = [[Rating(aspect="overall", score=5)], [Rating(aspect="overall", score=5 - margin)]]
    return Record(
        record_id=record_id,
        flow="people",
        instruction="q",
        responses=[
            {"text": "a", "model": "m", "source": "generator"},
            {"text": "b", "model": "m", "source": "generator"},
        ],
        judgments=[Judgment(rubric="multi-aspect", judge_model="j", ratings=scores, margin=margin)],
    )


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    fake = FakeCluster()
    fake.install(monkeypatch, "shared.stages")
    now = int(time.time() * 1000)
    headers = [("traceparent", TRACEPARENT)]

    def put(topic: str, value: bytes, record_id: str = "r1", at: int = 0, **extra: Any) -> None:
        fake.append(
            f"a.{topic}",
            value,
            key=record_id.encode(),
            headers=extra.get("headers", headers),
            timestamp_ms=now - 60_000 + at,
        )

    record = judged("r1", margin=0.5)
    # Written in another order than the stages': the path is in stage order.
    put("records.judged", record.to_bytes(), at=3000)
    put("records.ingested", Record(record_id="r1", flow="people", instruction="q").to_bytes())
    put("records.generated", record.to_bytes(), at=2000)
    put(
        "records.generated.dlq",
        record.to_bytes(),
        at=1000,
        headers=[
            *headers,
            (H_ERROR, b"LLMError: 503 overloaded"),
            (H_SERVICE, b"judge"),
            (H_ATTEMPTS, b"3"),
        ],
    )
    published = PublishedRecord(record_id="r1", flow="people", dataset="people", workspace="w")
    put("records.published", published.to_bytes(), at=4000)
    answer = AnnotatorResponse(
        record_id="r1", dataset="people", annotator="ann", status="submitted"
    )
    put("feedback.responses", answer.to_bytes(), at=5000)
    put("records.completed", CompletedRecord(record=record, dataset="people").to_bytes(), at=6000)
    # Other records, and an old message of r1 before --since.
    put("records.ingested", judged("r2", 3).to_bytes(), record_id="r2")
    fake.append("a.records.ingested", b"{}", key=b"r1", timestamp_ms=now - 30 * 86_400_000)
    fake.append("records.ingested", judged("r1", 3).to_bytes(), key=b"r1")  # another set
    yield fake


async def test_the_path_in_stage_order_with_services_and_outcomes(cluster: FakeCluster) -> None:
    since = datetime.now(UTC) - timedelta(days=7)
    path = await find_path(Settings(kafka=KAFKA), "r1", since, dict(FLOWS))
    assert path.flow == "people"
    rows = [(s.topic, s.stage, s.service) for s in path.steps]
    assert rows == [
        ("records.ingested", "ingested", "ingester"),
        ("records.generated", "generated", "generator"),
        ("records.generated.dlq", "dead-lettered from records.generated", "judge"),
        ("records.judged", "judged", "judge"),
        ("records.published", "in Argilla", "argilla-publisher"),
        ("feedback.responses", "answered", "feedback-collector"),
        ("records.completed", "completed", "feedback-collector"),
    ]
    outcomes = [s.outcome for s in path.steps]
    assert outcomes[1] == "2 response(s) generated"
    assert outcomes[2] == "dead-lettered after 3 attempt(s): LLMError: 503 overloaded"
    assert outcomes[3] == "judged (margin 0.5); to people (low_margin: margin 0.5 < 2)"
    assert outcomes[4] == "in Argilla: w/people"
    assert outcomes[5] == "answered by ann: submitted"
    assert path.trace_ids == [TRACE_ID]
    assert all(s.at.startswith(str(datetime.now(UTC).year)) for s in path.steps)


async def test_a_sure_judgment_is_auto_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster()
    fake.install(monkeypatch, "shared.stages")
    fake.append("records.judged", judged("r9", margin=3).to_bytes(), key=b"r9")
    since = datetime.now(UTC) - timedelta(days=1)
    path = await find_path(Settings(), "r9", since, dict(FLOWS))
    assert [s.outcome for s in path.steps] == ["judged (margin 3); auto-accepted (judge_sure)"]
    assert path.trace_ids == []


def phoenix(monkeypatch: pytest.MonkeyPatch, projects: list[dict[str, str]]) -> list[str]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path == "/v1/projects":
            return httpx.Response(200, json={"data": projects, "next_cursor": None})
        if request.url.path == "/v1/projects/loopline/spans":
            return httpx.Response(200, json={"data": [{}, {}, {}], "next_cursor": None})
        return httpx.Response(404)

    def client(**options: Any) -> httpx.Client:
        return REAL_CLIENT(transport=httpx.MockTransport(answer), **options)

    monkeypatch.setattr("cli.trace.httpx.Client", client)
    return asked


def test_the_trace_url_in_phoenix(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = phoenix(monkeypatch, [{"id": "UHJvamVjdDoy", "name": "loopline"}])
    link = trace_link("http://127.0.0.1:6006", "loopline", TRACE_ID)
    assert link["url"] == f"http://127.0.0.1:6006/projects/UHJvamVjdDoy/traces/{TRACE_ID}"
    assert link["spans"] == 3
    assert f"trace_id={TRACE_ID}" in asked[-1]
    phoenix(monkeypatch, [{"id": "UHJvamVjdDox", "name": "default"}])
    missing = trace_link("http://127.0.0.1:6006", "loopline", TRACE_ID)
    assert missing["url"] is None and "no project 'loopline'" in missing["note"]


def test_without_phoenix_the_trace_id_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(
        "cli.trace.httpx.Client",
        lambda **options: REAL_CLIENT(transport=httpx.MockTransport(refuse), **options),
    )
    link = trace_link("http://127.0.0.1:6006", "loopline", TRACE_ID)
    assert (link["trace_id"], link["url"]) == (TRACE_ID, None)
    assert "did not answer" in link["note"] and "connection refused" in link["note"]
    assert "no trace viewer" in trace_link(None, "loopline", TRACE_ID)["note"]


def test_trace_on_the_command_line(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(FLOWS_YAML)
    phoenix(monkeypatch, [{"id": "UHJvamVjdDoy", "name": "loopline"}])
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", "a.")
    monkeypatch.setenv("LOOPLINE_TELEMETRY__VIEWER_URL", "http://phoenix.internal:6006/")
    args = ["trace", "r1", "--flows-file", str(flows)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["flow"] == "people"
    assert len(document["steps"]) == 7
    assert document["trace"]["url"].startswith("http://phoenix.internal:6006/projects/")
    monkeypatch.setattr(console, "width", 250)
    text = runner.invoke(app, args)
    assert text.exit_code == 0
    assert "dead-lettered after 3 attempt(s)" in text.output
    assert f"trace {TRACE_ID}: http://phoenix.internal:6006/projects/UHJvamVjdDoy" in text.output
    unknown = runner.invoke(app, ["trace", "nobody", "--flows-file", str(flows)])
    assert unknown.exit_code == 1
    assert "no message about nobody" in unknown.output
