"""Transient or permanent (`shared.failures`), and what consumers do with each: a transient
failure is retried for as long as it lasts and never dead-lettered; only a bad record goes to
the dead-letter topic, alone."""

import json
import sqlite3
from typing import Any

import httpx
import pytest
from aiokafka import errors as kafka_errors
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel

from shared.broker import build_broker
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, Record
from shared.failures import Failure, PermanentError, TransientError, classify
from shared.flows import parse_flows
from shared.llm.base import LLMError
from shared.service import ServiceContext
from shared.settings import Settings


def status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:6900/api/v1/records")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code))


class Strict(BaseModel):
    n: int


def validation_error() -> Exception:
    try:
        Strict.model_validate({"n": "x"})
    except Exception as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransientError("argilla busy"), Failure.transient),
        (ConnectionRefusedError(), Failure.transient),
        (TimeoutError(), Failure.transient),
        (OSError(28, "No space left on device"), Failure.transient),
        (PermissionError(13, "Read-only file system"), Failure.transient),
        (sqlite3.OperationalError("database is locked"), Failure.transient),
        (kafka_errors.KafkaTimeoutError(), Failure.transient),
        (kafka_errors.NotLeaderForPartitionError(), Failure.transient),
        (httpx.ConnectError("refused"), Failure.transient),
        (status_error(503), Failure.transient),
        (status_error(429), Failure.transient),
        (LLMError("down", 503, retryable=True), Failure.transient),
        (LLMError("context too long", 400, retryable=False), Failure.permanent),
        (kafka_errors.MessageSizeTooLargeError(), Failure.permanent),
        (PermanentError("a template refuses it"), Failure.permanent),
        (validation_error(), Failure.permanent),
        (json.JSONDecodeError("x", "doc", 0), Failure.permanent),
        (status_error(409), Failure.unexpected),
        (RuntimeError("a bug"), Failure.unexpected),
        (KeyError("a bug"), Failure.unexpected),
    ],
)
def test_each_failure_has_one_kind(exc: BaseException, kind: Failure) -> None:
    assert classify(exc) == kind


def context() -> ServiceContext:
    settings = Settings()
    broker, dead_letters = build_broker(settings, "unit")
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    dead_letters.sleep = no_sleep
    return ServiceContext(
        name="unit",
        settings=settings,
        flows=parse_flows(
            {"flows": {"f": {"generate": [{"plugin": "openai"}], "judge": {"plugin": "pairwise"}}}},
            "x",
        ),
        broker=broker,
        dead_letters=dead_letters,
    )


def rec(record_id: str, instruction: str = "hi") -> bytes:
    return Record(record_id=record_id, flow="f", instruction=instruction).to_bytes()


async def test_concurrent_records_wait_out_a_transient_failure_and_only_bad_ones_die() -> None:
    ctx = context()
    calls: dict[str, int] = {}
    handled: list[str] = []
    letters: list[str] = []

    async def handle(record: Record, _: ServiceContext) -> None:
        calls[record.record_id] = calls.get(record.record_id, 0) + 1
        if record.instruction == "endpoint down" and calls[record.record_id] <= 12:
            raise LLMError("gave up after 5 attempts", 503, retryable=True)
        if record.instruction == "too long":
            raise LLMError("the prompt is longer than the context", 400, retryable=False)
        handled.append(record.record_id)

    ctx.consume_concurrently(RECORDS_INGESTED, Record, handle, max_batch=10)

    @ctx.broker.subscriber(f"{RECORDS_INGESTED}.dlq")
    async def dlq(message: KafkaMessage) -> None:
        letters.append(Record.model_validate_json(message.body).record_id)

    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(
            rec("a"), rec("b", "endpoint down"), rec("c", "too long"), topic=RECORDS_INGESTED
        )
    assert sorted(handled) == ["a", "b"]
    assert calls == {"a": 1, "b": 13, "c": 1}
    assert letters == ["c"]
    assert ctx.stats.processed == 2


async def test_a_broker_hiccup_when_passing_on_does_not_redo_the_work() -> None:
    ctx = context()
    work = 0
    passed: list[str] = []
    real_publish = ctx.broker.publish
    failures = iter([kafka_errors.KafkaTimeoutError(), kafka_errors.KafkaConnectionError()])

    async def flaky_publish(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("topic") == RECORDS_GENERATED:
            failure = next(failures, None)
            if failure is not None:
                raise failure
        return await real_publish(*args, **kwargs)

    async def handle(record: Record, c: ServiceContext) -> None:
        nonlocal work
        work += 1  # the LLM calls, paid for once
        await c.pass_on(record, "generate")

    ctx.consume_concurrently(RECORDS_INGESTED, Record, handle, max_batch=10)

    @ctx.broker.subscriber(RECORDS_GENERATED)
    async def out(message: KafkaMessage) -> None:
        passed.append(Record.model_validate_json(message.body).record_id)

    async with TestKafkaBroker(ctx.broker) as broker:
        ctx.broker.publish = flaky_publish  # type: ignore[method-assign]
        await broker.publish(rec("r1"), topic=RECORDS_INGESTED)
    assert work == 1
    assert passed == ["r1"]
