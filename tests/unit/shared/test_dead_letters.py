"""Retries, dead letters and trace propagation, on FastStream's in-memory test broker."""

from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.broker import build_broker
from shared.dead_letters import DeadLetter, PermanentError, backoff_delay
from shared.events import Record
from shared.settings import RetrySettings, Settings

INPUT = "records.test"


class Harness:
    def __init__(self, max_attempts: int = 3, fail_times: int = 0) -> None:
        self.settings = Settings(retry=RetrySettings(max_attempts=max_attempts))
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.broker, self.dead_letters = build_broker(self.settings, "unit", provider)
        self.sleeps: list[float] = []

        async def no_sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.dead_letters.sleep = no_sleep
        self.calls: dict[str, int] = {}
        self.done: list[str] = []
        self.dlq: list[DeadLetter] = []
        self.fail_times = fail_times

        @self.broker.subscriber(INPUT, group_id="g")
        async def handle(message: KafkaMessage) -> None:
            record = Record.model_validate_json(message.body)
            self.calls[record.record_id] = self.calls.get(record.record_id, 0) + 1
            if record.instruction == "permanent":
                raise PermanentError("cannot be fixed by retrying")
            if record.instruction == "flaky" and self.calls[record.record_id] <= self.fail_times:
                raise ConnectionError("endpoint hiccup")
            if record.instruction == "buggy" and self.calls[record.record_id] <= self.fail_times:
                raise RuntimeError("a bug")
            self.done.append(record.record_id)

        @self.broker.subscriber(f"{INPUT}.dlq", group_id="dlq-reader")
        async def read_dlq(message: KafkaMessage) -> None:
            headers: dict[str, Any] = message.headers
            self.dlq.append(DeadLetter.from_headers(message.body, headers))


def record(instruction: str, record_id: str) -> bytes:
    return Record(record_id=record_id, flow="f", instruction=instruction).to_bytes()


async def test_poison_message_goes_to_dlq_at_once_and_next_message_flows() -> None:
    h = Harness()
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(b'{"flow": "f"', topic=INPUT, key=b"k1")
        await broker.publish(record("fine", "r2"), topic=INPUT, key=b"r2")
    assert h.done == ["r2"]
    [letter] = h.dlq
    assert letter.body == b'{"flow": "f"'  # original bytes, untouched
    assert letter.error_type == "ValidationError"
    assert "Invalid JSON" in letter.error
    assert letter.attempts == 1  # no retry for what no retry can fix
    assert letter.service == "unit"
    assert letter.source_topic == INPUT
    assert h.sleeps == []


async def test_transient_failure_is_retried_with_backoff_then_succeeds() -> None:
    h = Harness(max_attempts=3, fail_times=2)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(record("flaky", "r1"), topic=INPUT)
    assert h.calls == {"r1": 3}
    assert h.done == ["r1"]
    assert h.dlq == []
    assert len(h.sleeps) == 2 and h.sleeps[1] > h.sleeps[0]


async def test_an_unexpected_error_is_dead_lettered_after_the_attempts() -> None:
    h = Harness(max_attempts=4, fail_times=99)
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(record("buggy", "r1"), topic=INPUT)
        await broker.publish(record("permanent", "r2"), topic=INPUT)
        await broker.publish(record("fine", "r3"), topic=INPUT)
    assert h.calls == {"r1": 4, "r2": 1, "r3": 1}
    assert h.done == ["r3"]
    by_attempts = {letter.attempts: letter for letter in h.dlq}
    assert by_attempts[4].error == "RuntimeError: a bug"
    assert Record.model_validate_json(by_attempts[4].body).record_id == "r1"
    assert by_attempts[1].error_type == "PermanentError"


async def test_a_transient_failure_is_retried_for_as_long_as_it_lasts() -> None:
    # 3 attempts are allowed for the unexpected; the endpoint is down for 40: never dead.
    h = Harness(max_attempts=3, fail_times=40)
    waiting: list[str | None] = []

    async def note_sleep(seconds: float) -> None:
        h.sleeps.append(seconds)
        waiting.append(h.dead_letters.waiting_on)

    h.dead_letters.sleep = note_sleep
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(record("flaky", "r1"), topic=INPUT)
    assert h.calls == {"r1": 41}
    assert h.done == ["r1"]
    assert h.dlq == []
    assert max(h.sleeps) <= h.settings.retry.backoff_max_s * 1.1
    assert all(w is not None and "ConnectionError: endpoint hiccup" in w for w in waiting)
    assert h.dead_letters.waiting_on is None  # recovered


def test_backoff_grows_and_is_capped() -> None:
    retry = RetrySettings(backoff_initial_s=1, backoff_multiplier=3, backoff_max_s=5)
    delays = [backoff_delay(retry, n, jitter=0) for n in (1, 2, 3, 4)]
    assert delays == [1, 3, 5, 5]
    jittered = backoff_delay(retry, 1, jitter=0.1)
    assert 0.9 <= jittered <= 1.1


async def test_trace_context_crosses_the_broker() -> None:
    h = Harness()
    async with TestKafkaBroker(h.broker) as broker:
        await broker.publish(record("fine", "r1"), topic=INPUT)
    spans = h.spans.get_finished_spans()
    publish = [s for s in spans if s.name.endswith("publish")]
    process = [s for s in spans if s.name.endswith("process")]
    assert publish and process, [s.name for s in spans]
    assert publish[0].context is not None and process[0].context is not None
    assert process[0].context.trace_id == publish[0].context.trace_id


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_credentials_is_a_clear_error(protocol: str) -> None:
    from shared.broker import broker_security
    from shared.settings import KafkaSettings

    with pytest.raises(ValueError, match="LOOPLINE_KAFKA__SASL_USERNAME"):
        broker_security(KafkaSettings(security_protocol=protocol))  # type: ignore[arg-type]


def test_sasl_options_pass_through() -> None:
    from faststream.security import SASLScram512
    from pydantic import SecretStr

    from shared.broker import admin_client_options, broker_security
    from shared.settings import KafkaSettings

    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("pw"),
    )
    security = broker_security(kafka)
    assert isinstance(security, SASLScram512)
    options = admin_client_options(kafka)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "pw"
    assert options["security_protocol"] == "SASL_PLAINTEXT"
