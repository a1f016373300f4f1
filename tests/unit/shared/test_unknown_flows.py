"""Records of a flow this service does not know are held for a grace period (a rollout may be
adding it), then dead-lettered with that reason; and what a service passes on is kept under the
message limit."""

import asyncio

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, CandidateResponse, Record
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import KafkaSettings, RetrySettings, Settings


def context(grace_s: float, max_message_bytes: int = 1_048_576) -> ServiceContext:
    settings = Settings(
        unknown_flow_grace_s=grace_s,
        retry=RetrySettings(backoff_initial_s=0.01, backoff_max_s=0.05),
        kafka=KafkaSettings(max_message_bytes=max_message_bytes),
    )
    broker, dead_letters = build_broker(settings, "unit")
    flows = {"known": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}
    return ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows({"flows": flows}, "x"),
        broker=broker,
        dead_letters=dead_letters,
    )


def run(ctx: ServiceContext, letters: list[str], passed: list[str]) -> None:
    async def handle(record: Record, c: ServiceContext) -> None:
        c.flow(record.flow)
        await c.pass_on(record, "generate", responses=record.responses)

    ctx.consume_concurrently(RECORDS_INGESTED, Record, handle, max_batch=10)

    @ctx.broker.subscriber(f"{RECORDS_INGESTED}.dlq")
    async def dlq(message: KafkaMessage) -> None:
        letters.append(message.headers["loopline-error"])

    @ctx.broker.subscriber(RECORDS_GENERATED)
    async def out(message: KafkaMessage) -> None:
        passed.append(Record.model_validate_json(message.body).record_id)


async def test_an_unknown_flow_is_held_then_dead_lettered_with_the_reason() -> None:
    ctx = context(grace_s=0.4)
    letters: list[str] = []
    passed: list[str] = []
    run(ctx, letters, passed)
    waiting: list[str | None] = []

    async def watch() -> None:
        await asyncio.sleep(0.2)
        waiting.append(ctx.dead_letters.waiting_on)

    async with TestKafkaBroker(ctx.broker) as broker:
        record = Record(record_id="r1", flow="new", instruction="q").to_bytes()
        await asyncio.gather(broker.publish(record, topic=RECORDS_INGESTED), watch())
    assert passed == []
    [letter] = letters
    assert "flow 'new' is not in this service's flow file" in letter and "held 0 s" in letter
    assert waiting[0] is not None and "holding its records for up to 0 s" in waiting[0]


async def test_a_flow_that_arrives_within_the_grace_period_loses_nothing() -> None:
    ctx = context(grace_s=30)
    letters: list[str] = []
    passed: list[str] = []
    run(ctx, letters, passed)

    async def roll_out() -> None:
        await asyncio.sleep(0.2)
        ctx.flows = parse_flows(
            {
                "flows": {
                    "new": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}
                }
            },
            "x",
        )

    async with TestKafkaBroker(ctx.broker) as broker:
        record = Record(record_id="r1", flow="new", instruction="q").to_bytes()
        await asyncio.gather(broker.publish(record, topic=RECORDS_INGESTED), roll_out())
    assert passed == ["r1"]
    assert letters == []


async def test_a_record_grown_past_the_message_limit_is_dead_lettered_with_its_size() -> None:
    ctx = context(grace_s=30, max_message_bytes=65_536)
    letters: list[str] = []
    passed: list[str] = []
    run(ctx, letters, passed)
    small = Record(record_id="small", flow="known", instruction="q")
    big = Record(
        record_id="big",
        flow="known",
        instruction="q",
        responses=[CandidateResponse(text="x" * 70_000, model="m")],
    )
    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(small.to_bytes(), big.to_bytes(), topic=RECORDS_INGESTED)
    assert passed == ["small"]
    [letter] = letters
    assert "RecordTooLarge: record big is" in letter and "message limit of 65536" in letter


async def test_no_grace_dead_letters_the_first_record_at_once() -> None:
    ctx = context(grace_s=0)
    letters: list[str] = []
    run(ctx, letters, [])
    waited: list[str | None] = []

    async def note(seconds: float) -> None:
        waited.append(ctx.dead_letters.waiting_on)

    ctx.dead_letters.sleep = note
    async with TestKafkaBroker(ctx.broker) as broker:
        record = Record(record_id="r1", flow="other-set", instruction="q").to_bytes()
        await broker.publish(record, topic=RECORDS_INGESTED)
    assert waited == []  # never held, not even the first record of the flow
    [letter] = letters
    assert "flow 'other-set' is not in this service's flow file" in letter
