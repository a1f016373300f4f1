import pytest
from faststream.kafka import TestKafkaBroker
from typer.testing import CliRunner

from shared.broker import build_broker
from shared.cli import SERVICES, app, load_service
from shared.events import RECORDS_INGESTED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings


async def test_consume_validates_the_event_and_counts() -> None:
    settings = Settings()
    broker, _ = build_broker(settings, "unit")
    context = ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows({"flows": {"f": {}}}, "x"),
        broker=broker,
    )
    seen: list[Record] = []

    async def handle(record: Record, ctx: ServiceContext) -> None:
        assert ctx is context
        seen.append(record)

    context.consume(RECORDS_INGESTED, Record, handle)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            Record(record_id="r1", flow="f", instruction="hi").to_bytes(), topic=RECORDS_INGESTED
        )
        await test_broker.publish(b'{"flow": "f"}', topic=RECORDS_INGESTED)  # no prompt: DLQ
    assert [r.record_id for r in seen] == ["r1"]
    assert context.stats.processed == 1
    assert context.group_id == "loopline-unit"


def test_every_service_declares_its_topics_and_dead_letters() -> None:
    consumed = {}
    for name in SERVICES:
        spec = load_service(name)
        assert spec.name == name
        assert spec.consumes and spec.produces
        for topic in spec.consumes:
            assert f"{topic}.dlq" in spec.topics()
        consumed[name] = spec.consumes[0]
    assert consumed["generator"] == "records.ingested"
    assert consumed["judge"] == "records.generated"
    assert consumed["argilla-publisher"] == "records.judged"
    assert consumed["exporter"] == "records.completed"


def test_cli_help_and_errors(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "stack", "plugins", "check-flows"):
        assert command in result.output

    result = runner.invoke(app, ["run", "no-such-service"])
    assert result.exit_code == 2
    assert "unknown service 'no-such-service'" in result.output

    bad = tmp_path / "flows.yaml"  # type: ignore[operator]
    bad.write_text("flows:\n  f:\n    route: {plugin: nope}\n")
    result = runner.invoke(app, ["check-flows", str(bad)])
    assert result.exit_code == 2
    assert "flows.f.route.plugin: unknown routers plugin 'nope'; available: all" in (
        result.output.replace("\n", "")
    )

    result = runner.invoke(app, ["plugins"])
    assert "loopline.llms" in result.output and "openai" in result.output
