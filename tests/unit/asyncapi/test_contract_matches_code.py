"""What the document says about keys, dead-letter headers and unsent events is what the code
that publishes does (`shared.topic_contract` against the publishing code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.exporter.export import ExportResult
from services.feedback_collector.emitter import Emitter, Sent
from shared.dead_letters import DeadLetters
from shared.events import (
    ALL_TOPICS,
    DATASETS_EXPORTED,
    RECORDS_JUDGED,
    AnnotatorResponse,
    CompletedRecord,
    Record,
    ResponseStatus,
)
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import RetrySettings, Settings
from shared.topic_contract import (
    RECORD_ID_KEY,
    TOPICS,
    DeadLetterHeaders,
    UnsentEventReference,
)


@dataclass
class RecordingBroker:
    """Takes what a service publishes, as the broker would be handed it."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    async def publish(self, body: bytes, **options: Any) -> None:
        self.sent.append({"body": body, **options})


def documented_headers() -> set[str]:
    return set(DeadLetterHeaders.model_json_schema(by_alias=True)["properties"])


def test_every_topic_has_a_contract() -> None:
    assert set(TOPICS) == set(ALL_TOPICS)


async def test_a_dead_letter_carries_exactly_the_documented_headers() -> None:
    broker = RecordingBroker()
    dead_letters = DeadLetters("judge", RetrySettings())
    dead_letters.bind(broker)  # type: ignore[arg-type]
    consumed = SimpleNamespace(
        topic="records.generated", partition=1, offset=42, key=b"r-1", value=b'{"bad": 1}'
    )
    await dead_letters.send_record(consumed, ValueError("not a record"), attempts=3)
    [sent] = broker.sent
    assert sent["topic"] == "records.generated.dlq"
    assert sent["key"] == b"r-1"  # the original key, unchanged
    assert sent["body"] == b'{"bad": 1}'  # the original bytes
    headers = sent["headers"]
    assert set(headers) <= documented_headers()
    parsed = DeadLetterHeaders.model_validate(headers)
    assert (parsed.service, parsed.attempts, parsed.source_offset) == ("judge", "3", "42")


async def test_an_unsent_event_is_the_documented_reference_keyed_by_record_id() -> None:
    sent: list[tuple[str, bytes, bytes, dict[str, str] | None]] = []

    async def send(topic: str, key: bytes, value: bytes, headers: Any = None) -> None:
        sent.append((topic, key, value, headers))

    emitter = Emitter(send, max_message_bytes=2_000)
    big = {"answer": "x" * 5_000}
    response = AnnotatorResponse(
        record_id="r-9", dataset="d", annotator="ann", status=ResponseStatus.submitted, values=big
    )
    assert await emitter.response(response, argilla_record_id="a-1") == Sent.dead_lettered
    record = Record(record_id="r-9", flow="f", instruction="hi", metadata={"m": "y" * 5_000})
    completed = CompletedRecord(record=record, dataset="d", responses=[response])
    assert await emitter.completed(completed, "dataset-id", "a-1") == Sent.dead_lettered
    assert [topic for topic, *_ in sent] == ["feedback.responses.dlq", "records.completed.dlq"]
    for _, key, value, headers in sent:
        assert key == b"r-9"
        reference = UnsentEventReference.model_validate_json(value)
        assert (reference.record_id, reference.argilla_record_id) == ("r-9", "a-1")
        assert headers is not None and set(headers) <= documented_headers()
        assert DeadLetterHeaders.model_validate(headers).replayable == "false"


async def test_a_stage_passes_a_record_on_keyed_by_its_record_id() -> None:
    broker = RecordingBroker()
    settings = Settings()
    dead_letters = DeadLetters("judge", settings.retry)
    context = ServiceContext(
        name="judge",
        settings=settings,
        flows=parse_flows({"flows": {"f": {}}}, "inline"),
        broker=broker,  # type: ignore[arg-type]
        dead_letters=dead_letters,
    )
    record = Record(record_id="r-5", flow="f", instruction="hi")
    await context.pass_on(record, "judge")
    [published] = broker.sent
    assert (published["topic"], published["key"]) == (RECORDS_JUDGED, b"r-5")
    assert TOPICS[RECORDS_JUDGED].key == RECORD_ID_KEY


def test_an_export_announcement_is_keyed_by_flow_and_format() -> None:
    result = ExportResult("support", "dpo", 3, "/x/support/dpo/v3", {"train": 10}, True)
    assert result.key == b"support/dpo"
    assert "`<flow>/<format>`" in TOPICS[DATASETS_EXPORTED].key
