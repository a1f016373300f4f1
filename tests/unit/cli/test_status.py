"""`loopline status` against an in-memory cluster: lag per partition and in total, throughput,
dead letters with the latest reason, health answers, records per flow and stage (stuck ones
too), the JSON document, the text, and a clear error when the broker cannot be reached."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from rich.console import Console
from typer.testing import CliRunner

from cli import status as status_module
from cli.app import app
from cli.status import render
from cli.status_report import HealthTarget, StatusReader, health_target, parse_since
from shared.dead_letters import H_ATTEMPTS, H_ERROR, H_ERROR_TYPE, H_SERVICE, H_TOPIC
from shared.events import PublishedRecord, Record
from shared.flows import parse_flows
from shared.settings import KafkaSettings, Settings
from tests.unit.shared.fake_kafka import FakeCluster, FakeConsumer

FLOWS = parse_flows(
    {
        "flows": {
            "support": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "additive"}},
            "people": {"publish": {"plugin": "sft-demonstration"}},
        }
    },
    "test",
)
PREFIX = "a."
KAFKA = KafkaSettings(topic_prefix=PREFIX, group_prefix="team")
NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000
runner = CliRunner()


def record(record_id: str, flow: str = "support") -> bytes:
    return Record(record_id=record_id, flow=flow, instruction="q").to_bytes()


def letter_headers(error: str) -> list[tuple[str, bytes]]:
    return [
        (H_ERROR, error.encode()),
        (H_ERROR_TYPE, error.split(":")[0].encode()),
        (H_SERVICE, b"judge"),
        (H_ATTEMPTS, b"1"),
        (H_TOPIC, b"a.records.generated"),
    ]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    fake = FakeCluster()
    fake.install(monkeypatch, "shared.stages", "shared.topic_reader", "cli.status_report")
    fake.create("a.records.generated", partitions=2)
    # Six records waiting for the judge: it committed 2 of partition 0, nothing of 1.
    for i in range(4):
        fake.append("a.records.generated", record(f"g{i}"), key=f"g{i}".encode(), partition=0)
    for i in range(4, 6):
        fake.append("a.records.generated", record(f"g{i}"), key=f"g{i}".encode(), partition=1)
    fake.committed["team-judge"] = {TopicPartition("a.records.generated", 0): 2}
    # Each of them ingested an hour ago (stuck at generated); one ingested long before --since.
    for i in range(6):
        fake.append("a.records.ingested", record(f"g{i}"), timestamp_ms=NOW_MS - HOUR_MS)
    fake.append("a.records.ingested", record("ancient"), timestamp_ms=NOW_MS - 48 * HOUR_MS)
    # Two dead letters, the newest last; a record of a flow not in the flow file.
    fake.append(
        "a.records.generated.dlq",
        record("d1"),
        headers=letter_headers("LLMError: 500"),
        timestamp_ms=NOW_MS - 60_000,
    )
    fake.append(
        "a.records.generated.dlq",
        record("d2"),
        headers=letter_headers("ValidationError: bad"),
        timestamp_ms=NOW_MS - 1000,
    )
    fake.append("a.records.ingested", record("x", flow="gone"))
    # A record in Argilla for an hour: waiting on people.
    fake.append("a.records.judged", record("p1", "people"), timestamp_ms=NOW_MS - HOUR_MS)
    published = PublishedRecord(record_id="p1", flow="people", dataset="people", workspace="w")
    fake.append("a.records.published", published.to_bytes(), timestamp_ms=NOW_MS - HOUR_MS)
    # Another flow set's group and topics on the same cluster.
    fake.append("records.generated", record("theirs"))
    fake.committed["loopline-judge"] = {TopicPartition("records.generated", 0): 0}
    yield fake


def health_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.port == 9001:
            return httpx.Response(
                200,
                json={
                    "service": "judge",
                    "status": "ok",
                    "processed": 7,
                    "in_flight": 3,
                    "waiting_on": "calling the LLM: ConnectError (retrying for 12 s)",
                    "last_error": {
                        "at": datetime.now(UTC).isoformat(),
                        "error": "handling records.generated: ConnectError: refused",
                        "kind": "transient",
                    },
                    "uptime_s": 40.0,
                    "partitions": {"judge_records_generated_batch": ["a.records.generated/0"]},
                },
            )
        raise httpx.ConnectError("connection refused", request=request)

    real = httpx.AsyncClient

    def client(**options: Any) -> httpx.AsyncClient:
        return real(transport=httpx.MockTransport(answer), **options)

    monkeypatch.setattr("cli.status_report.httpx.AsyncClient", client)


def reader(**changes: Any) -> StatusReader:
    options: dict[str, Any] = {
        "settings": Settings(kafka=KAFKA),
        "flows": FLOWS,
        "since": datetime.now(UTC) - timedelta(hours=24),
        "health": [
            HealthTarget("http://127.0.0.1:9001/healthz"),
            health_target("generator=http://127.0.0.1:9002/healthz"),
        ],
        "window_s": 0.2,
        "stuck_after_s": 300,
    }
    options.update(changes)
    return StatusReader(**options)


async def report_of(status: StatusReader, during: Any = None) -> dict[str, Any]:
    await status.start()
    try:
        if during is None:
            return await status.report()
        task = asyncio.create_task(status.report())
        await asyncio.sleep(0.05)
        during()
        return await task
    finally:
        await status.stop()


def stage(report: dict[str, Any], service: str) -> dict[str, Any]:
    return next(row for row in report["stages"] if row["service"] == service)


async def test_lag_per_partition_and_in_total_of_each_group(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    health_transport(monkeypatch)
    report = await report_of(reader())
    judge = stage(report, "judge")
    assert judge["group"] == "team-judge"
    assert judge["topics"] == ["a.records.generated"]
    assert judge["lag"] == 4  # 2 of partition 0 and both of partition 1 (never committed)
    assert [(p["partition"], p["committed"], p["end"], p["lag"]) for p in judge["partitions"]] == [
        (0, 2, 4, 2),
        (1, None, 2, 2),
    ]
    # The generator's group never committed: its whole input is behind.
    assert stage(report, "generator")["lag"] == 8
    collector = stage(report, "feedback-collector")
    assert (collector["group"], collector["lag"]) == (None, None)
    assert stage(report, "ingester")["lag"] is None  # no records.incoming yet


async def test_throughput_is_the_change_over_the_window(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    health_transport(monkeypatch)

    def work() -> None:  # during the window: the judge commits 2, 3 more arrive
        cluster.committed["team-judge"][TopicPartition("a.records.generated", 0)] = 4
        for i in range(3):
            cluster.append("a.records.generated", record(f"n{i}"), partition=1)

    report = await report_of(reader(), during=work)
    judge = stage(report, "judge")
    window = report["window_s"]
    assert window >= 0.2
    assert judge["consumed_per_s"] == pytest.approx(2 / window, rel=0.1)
    assert judge["produced_per_s"] == pytest.approx(3 / window, rel=0.1)
    assert judge["lag"] == 5  # 0 of partition 0, all 5 of partition 1


async def test_dead_letters_health_and_records_per_flow(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    health_transport(monkeypatch)
    report = await report_of(reader())
    [letters] = report["dead_letters"]
    assert (letters["topic"], letters["messages"]) == ("a.records.generated.dlq", 2)
    assert letters["latest"]["error"] == "ValidationError: bad"
    assert letters["latest"]["service"] == "judge"
    assert letters["latest"]["record_id"] == "d2"

    judge = stage(report, "judge")["health"]
    assert judge["reachable"] and judge["in_flight"] == 3
    assert judge["waiting_on"].startswith("calling the LLM")
    assert judge["last_error"]["error"].endswith("ConnectError: refused")
    assert judge["partitions"] == {"judge_records_generated_batch": ["a.records.generated/0"]}
    generator = stage(report, "generator")["health"]
    assert generator["reachable"] is False and "refused" in generator["error"]
    assert stage(report, "exporter")["health"] is None
    assert [h["reachable"] for h in report["health"]] == [True, False]

    records = report["records"]
    support = next(f for f in records["flows"] if f["flow"] == "support")
    assert support["stages"]["ingested"] == {"reached": 6, "at": 0, "stuck": 0, "failed": 0}
    # Six generated just now (the judge's input): at generated, not stuck yet.
    assert support["stages"]["generated"]["reached"] == 6
    assert support["stages"]["generated"]["at"] == 6
    assert support["stages"]["judged"]["failed"] == 2  # the dead letters, on their way in
    assert support["stages"]["in_argilla"] is None  # the flow sends nothing to people
    people = next(f for f in records["flows"] if f["flow"] == "people")
    assert people["stages"]["in_argilla"]["stuck"] == 1
    assert people["stuck_waiting_on_people"] == 1
    assert people["stages"]["generated"] is None
    assert records["unknown_flows"] == {"gone": 1}
    assert records["messages_read"] > records["messages_counted"]  # ancient: before --since


async def test_records_are_stuck_once_at_a_stage_longer_than_the_bound(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    health_transport(monkeypatch)
    # Eight ingested an hour ago, never generated: stuck at ingested.
    for i in range(8):
        cluster.append("a.records.ingested", record(f"s{i}"), timestamp_ms=NOW_MS - HOUR_MS)
    report = await report_of(reader(stuck_after_s=600))
    support = next(f for f in report["records"]["flows"] if f["flow"] == "support")
    assert support["stages"]["ingested"]["stuck"] == 8
    assert support["stuck"] == 8
    report = await report_of(reader(stuck_after_s=7200))
    support = next(f for f in report["records"]["flows"] if f["flow"] == "support")
    assert support["stuck"] == 0


async def test_the_text_names_lag_errors_and_stuck_records(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    health_transport(monkeypatch)
    report = await report_of(reader())
    console = Console(record=True, width=250)
    for block in render(report):
        console.print(block)
    text = console.export_text()
    assert "a.records.generated[0]=2 a.records.generated[1]=2" in text
    assert "waiting on: calling the LLM" in text
    assert "last error" in text and "ConnectError: refused" in text
    assert "holds 1 partition" in text  # the judge replica's (--json names them)
    assert "unreachable" in text
    # A URL whose service is not known and does not answer is named on its own.
    report = await report_of(reader(health=[HealthTarget("http://127.0.0.1:9003/healthz")]))
    console = Console(record=True, width=250)
    for block in render(report):
        console.print(block)
    assert "health http://127.0.0.1:9003/healthz unreachable" in console.export_text()
    assert "ValidationError: bad" in text
    assert "1 waiting on people" in text
    assert "gone (1)" in text
    assert "records per flow" in text and "no records since --since" not in text
    people = report["records"]["flows"][1]
    assert people["flow"] == "people"
    for counted in people["stages"].values():
        if counted is not None:
            counted["reached"] = 0
    console = Console(record=True, width=250)
    for block in render(report):
        console.print(block)
    assert "no records since --since: people" in console.export_text()
    assert "since" in text and "--since" in text


def test_status_json_on_the_command_line(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text("flows:\n  support:\n    judge: {plugin: additive}\n")
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", PREFIX)
    monkeypatch.setenv("LOOPLINE_KAFKA__GROUP_PREFIX", "team")
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    result = runner.invoke(
        app,
        ["status", "--json", "--window", "0.1", "--flows-file", str(flows), "--since", "2h"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {
        "at",
        "kafka",
        "window_s",
        "stages",
        "health",
        "dead_letters",
        "records",
    }
    assert [row["service"] for row in document["stages"]] == [
        "ingester",
        "generator",
        "judge",
        "argilla-publisher",
        "feedback-collector",
        "exporter",
    ]
    assert stage(document, "judge")["lag"] == 4
    assert stage(document, "judge")["health"] is None  # not the local stack: no URL known
    assert document["records"]["flows"][0]["flow"] == "support"


def test_an_unreachable_broker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: StatusReader) -> None:
        raise KafkaConnectionError("Unable to bootstrap from [('kafka.invalid', 9092)]")

    monkeypatch.setattr(StatusReader, "start", refuse)
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "cannot reach the Kafka broker at kafka.invalid:9092" in result.output
    assert "Unable to bootstrap" in result.output


def test_since_takes_durations_and_times() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("30", now) == now - timedelta(seconds=30)
    assert parse_since("2026-12-01T08:00", now) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", now)
    result = runner.invoke(app, ["status", "--since", "yesterday"])
    assert result.exit_code == 2 and "--since" in result.output


def test_the_local_stacks_services_are_asked_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOOPLINE_STACK_DIR", str(tmp_path))
    monkeypatch.delenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    targets = status_module.default_health(Settings(), None)
    assert [t.service for t in targets][:2] == ["ingester", "generator"]
    assert targets[2].url == "http://127.0.0.1:7103/healthz"  # ports.services + 1 + index
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka-1.internal:9093")
    assert status_module.default_health(Settings(), None) == []


async def test_ends_below_the_last_batch_are_read_past(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tansu reports a partition's end as the start of its last batch plus one: two dead
    letters written in one batch look like one, and three new records in one batch like one."""
    health_transport(monkeypatch)
    for i in range(3):
        cluster.append("a.records.generated", record(f"b{i}"), partition=1)
    honest = FakeConsumer.end_offsets

    # What the broker reports below the true end, per partition.
    short = {
        TopicPartition("a.records.generated.dlq", 0): 1,
        TopicPartition("a.records.generated", 1): 2,
    }

    async def low(self: FakeConsumer, partitions: list[TopicPartition]) -> dict[Any, int]:
        ends = await honest(self, partitions)
        return {tp: end - short.get(tp, 0) for tp, end in ends.items()}

    monkeypatch.setattr(FakeConsumer, "end_offsets", low)
    report = await report_of(reader())
    [letters] = report["dead_letters"]
    assert letters["messages"] == 2
    assert letters["latest"]["record_id"] == "d2"
    judge = stage(report, "judge")
    assert [(p["partition"], p["end"], p["lag"]) for p in judge["partitions"]] == [
        (0, 4, 2),
        (1, 5, 5),
    ]
