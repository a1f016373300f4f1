"""Rolling upgrades: an event written by a newer Loopline (a higher `schema_version`, say with a
field this service does not know) is not a bad record. Reading it fails as a transient failure,
so the consumer waits for its own upgrade instead of dead-lettering the record; an event of this
version that does not validate is still permanent (dead-lettered)."""

from __future__ import annotations

import json

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from shared.broker import build_broker
from shared.events import SCHEMA_VERSION, NewerSchemaError, Record, read_event
from shared.failures import Failure, classify
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import Settings

RECORD = Record(record_id="r1", flow="f", instruction="q")


def with_fields(**fields: object) -> bytes:
    return json.dumps({**json.loads(RECORD.to_bytes()), **fields}).encode()


def test_an_event_of_this_version_reads_back() -> None:
    assert read_event(Record, RECORD.to_bytes()) == RECORD


def test_a_newer_event_this_service_cannot_read_is_transient() -> None:
    newer = with_fields(schema_version=SCHEMA_VERSION + 1, priority="high")
    with pytest.raises(NewerSchemaError) as caught:
        read_event(Record, newer)
    assert classify(caught.value) is Failure.transient
    message = str(caught.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in message and "upgrade" in message


def test_a_bad_event_of_this_version_is_permanent() -> None:
    with pytest.raises(ValidationError) as caught:
        read_event(Record, with_fields(priority="high"))
    assert classify(caught.value) is Failure.permanent


@pytest.mark.parametrize(
    "body", [b"not json", b"[1]", b'{"schema_version": "2"}', b'{"schema_version": 0}']
)
def test_garbage_is_permanent_whatever_it_claims(body: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        read_event(Record, body)
    assert classify(caught.value) is Failure.permanent


class Upgraded(BaseException):
    """Ends the wait in the test below, standing in for the service's upgrade."""


async def test_a_consumer_waits_on_a_newer_event_and_dead_letters_nothing() -> None:
    settings = Settings()
    broker, dead_letters = build_broker(settings, "unit-schema", None)
    context = ServiceContext(
        name="unit-schema",
        settings=settings,
        flows=parse_flows({"flows": {"f": {}}}, "x"),
        broker=broker,
        dead_letters=dead_letters,
    )
    waits: list[str | None] = []

    async def wait(seconds: float) -> None:
        waits.append(dead_letters.waiting_on)
        if len(waits) == 5:
            raise Upgraded

    dead_letters.sleep = wait
    handled: list[str] = []

    async def handle(record: Record, ctx: ServiceContext) -> None:
        handled.append(record.record_id)

    context.consume("records.test", Record, handle)
    letters: list[bytes] = []

    @broker.subscriber("records.test.dlq", group_id="dlq-reader")
    async def read_dlq(message: KafkaMessage) -> None:
        letters.append(message.body)

    newer = with_fields(schema_version=SCHEMA_VERSION + 1, priority="high")
    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(Upgraded):
            await test_broker.publish(newer, topic="records.test", key=b"r1")
        await test_broker.publish(with_fields(priority="high"), topic="records.test", key=b"r2")
    assert len(waits) == 5  # retried, not dead-lettered, while it waited
    assert all(w is not None and "waiting for its upgrade" in w for w in waits), waits
    assert len(letters) == 1  # only the record of this version that is bad
    assert json.loads(letters[0])["record_id"] == "r1" and b"priority" in letters[0]
    assert handled == []
