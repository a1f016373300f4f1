"""A stage that already passed a record on skips it when it is redelivered: the generator does
not generate it again (a second, different output downstream), the judge does not judge it
again."""

from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.flows import parse_flows
from shared.produced import PassedOnInMemory
from shared.service import ServiceContext
from shared.settings import Settings


def context_with(passed_on: PassedOnInMemory) -> ServiceContext:
    settings = Settings()
    broker, dead_letters = build_broker(settings, "unit")
    flows = {"f": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}
    return ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows({"flows": flows}, "x"),
        broker=broker,
        dead_letters=dead_letters,
        passed_on=passed_on,
    )


async def test_a_redelivered_record_is_not_worked_on_again() -> None:
    ctx = context_with(PassedOnInMemory())
    broker = ctx.broker
    generations: list[str] = []
    passed: list[str] = []

    async def generate(record: Record, c: ServiceContext) -> None:
        generations.append(record.record_id)  # the LLM calls
        await c.pass_on(record, "generate")

    ctx.consume_concurrently(RECORDS_INGESTED, Record, generate, 10, once_per_record=True)

    @broker.subscriber(RECORDS_GENERATED)
    async def out(message: KafkaMessage) -> None:
        passed.append(Record.model_validate_json(message.body).record_id)

    async with TestKafkaBroker(broker) as test_broker:
        first = Record(record_id="r1", flow="f", instruction="q").to_bytes()
        other = Record(record_id="r2", flow="f", instruction="q").to_bytes()
        await test_broker.publish(first, topic=RECORDS_INGESTED)
        await test_broker.publish_batch(first, other, topic=RECORDS_INGESTED)  # r1 redelivered
    assert generations == ["r1", "r2"]
    assert passed == ["r1", "r2"]
    assert ctx.stats.processed == 3  # the skipped redelivery is done with, and committed


class Counted(PassedOnInMemory):
    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    async def start(self) -> None:
        self.started += 1


async def test_the_read_back_starts_with_the_service_not_at_its_first_record() -> None:
    # Reading back hours of output takes seconds: begun before consuming, beside the group
    # join, a new replica's first record does not wait for it. Only a stage that asks.
    async def handle(record: Record, c: ServiceContext) -> None:
        return None

    asks, ignores = Counted(), Counted()
    ctx = context_with(asks)
    ctx.consume_concurrently(RECORDS_INGESTED, Record, handle, 10, once_per_record=True)
    ctx.consume_concurrently(RECORDS_GENERATED, Record, handle, 10, once_per_record=True)
    other = context_with(ignores)
    other.consume_concurrently(RECORDS_INGESTED, Record, handle, 10)
    for step in [*ctx.starters, *other.starters]:
        await step()
    assert (asks.started, ignores.started) == (1, 0)
