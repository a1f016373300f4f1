import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from typer.testing import CliRunner

from cli.app import app
from cli.run import SERVICES, load_service
from shared.broker import build_broker
from shared.events import RECORDS_INGESTED, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings


def unit_context() -> ServiceContext:
    """A service context on a broker for FastStream's in-memory test broker."""
    settings = Settings()
    broker, dead_letters = build_broker(settings, "unit")
    return ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows({"flows": {"f": {}}}, "x"),
        broker=broker,
        dead_letters=dead_letters,
    )


async def test_consume_validates_the_event_and_counts() -> None:
    context = unit_context()
    broker = context.broker
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
    consumed: dict[str, tuple[str, ...]] = {}
    for name in SERVICES:
        spec = load_service(name)
        assert spec.name == name
        assert spec.produces
        for topic in spec.consumes:
            assert f"{topic}.dlq" in spec.topics()
        consumed[name] = spec.consumes
    assert consumed["ingester"] == ("records.incoming",)
    assert consumed["feedback-collector"] == ()  # Argilla's webhooks, not a topic
    assert consumed["generator"] == ("records.ingested",)
    assert consumed["judge"] == ("records.generated",)
    assert consumed["argilla-publisher"] == ("records.judged",)
    assert consumed["exporter"] == ("records.completed", "records.judged")


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


async def test_concurrent_consumption_dead_letters_each_failure_alone() -> None:
    context = unit_context()
    broker = context.broker
    handled: list[str] = []
    letters: list[tuple[bytes, str]] = []

    async def handle(record: Record, ctx: ServiceContext) -> None:
        if record.instruction == "fail":
            raise RuntimeError("model said no")
        handled.append(record.record_id)

    context.consume_concurrently(RECORDS_INGESTED, Record, handle, max_batch=10)

    @broker.subscriber(f"{RECORDS_INGESTED}.dlq")
    async def dlq(message: KafkaMessage) -> None:
        letters.append((message.body, message.headers["loopline-error"]))

    good = Record(record_id="ok", flow="f", instruction="hi").to_bytes()
    bad = Record(record_id="bad", flow="f", instruction="fail").to_bytes()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(good, b"not json", bad, topic=RECORDS_INGESTED)
    assert handled == ["ok"]
    assert context.stats.processed == 1
    assert sorted(body for body, _ in letters) == sorted([b"not json", bad])
    assert any(error == "RuntimeError: model said no" for _, error in letters)
