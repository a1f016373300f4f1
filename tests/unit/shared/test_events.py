import pytest
from pydantic import ValidationError

from shared.events import (
    ALL_TOPICS,
    AnnotatorResponse,
    CandidateResponse,
    ChatMessage,
    CompletedRecord,
    Judgment,
    Rating,
    Record,
    ResponseStatus,
    Role,
    TokenUsage,
    dead_letter_topic,
)


def test_record_without_id_gets_a_stable_content_hash() -> None:
    a = Record(flow="f", instruction="Write a haiku", context="about Kafka")
    b = Record(flow="other", instruction="Write a haiku", context="about Kafka", tags=["x"])
    c = Record(flow="f", instruction="Write a haiku", context="about Argilla")
    assert a.record_id == b.record_id  # id depends on content, not on routing details
    assert a.record_id != c.record_id
    assert len(a.record_id) == 32


def test_client_given_record_id_is_kept() -> None:
    assert Record(record_id="app-42", flow="f", instruction="hi").record_id == "app-42"


def test_record_needs_a_prompt() -> None:
    with pytest.raises(ValidationError, match="needs an `instruction` or non-empty `messages`"):
        Record(flow="f")
    with pytest.raises(ValidationError, match="needs an `instruction`"):
        Record(flow="f", messages=[])


def test_record_rejects_unknown_fields_and_bad_roles() -> None:
    with pytest.raises(ValidationError, match="instructions"):
        Record.model_validate({"flow": "f", "instructions": "typo"})
    with pytest.raises(ValidationError, match="role"):
        Record.model_validate({"flow": "f", "messages": [{"role": "robot", "content": "x"}]})


def test_full_record_round_trips_through_json() -> None:
    record = Record(
        flow="support",
        messages=[
            ChatMessage(role=Role.system, content="be brief"),
            ChatMessage(role=Role.user, content="What is Kafka?"),
        ],
        responses=[
            CandidateResponse(
                text="A log.",
                model="qwen",
                params={"temperature": 0.7},
                finish_reason="stop",
                usage=TokenUsage(prompt_tokens=12, completion_tokens=3),
                latency_ms=80.5,
            )
        ],
        judgments=[
            Judgment(
                rubric="multi-aspect",
                judge_model="qwen",
                ratings=[[Rating(aspect="helpfulness", score=4, rationale="short but right")]],
                margin=0.0,
            )
        ],
        metadata={"app": "bot", "latency": 1.5},
        tags=["prod"],
    )
    wire = record.to_bytes()
    again = Record.model_validate_json(wire)
    assert again == record
    assert again.schema_version == 1
    assert again.responses[0].usage is not None
    assert again.responses[0].usage.total_tokens == 15


def test_prompt_messages_from_instruction_and_context() -> None:
    record = Record(flow="f", instruction="Summarise", context="the text")
    [message] = record.prompt_messages()
    assert message.role is Role.user
    assert message.content == "Summarise\n\nthe text"


def test_completed_record_carries_its_responses_only() -> None:
    record = Record(flow="f", instruction="hi")
    response = AnnotatorResponse(
        record_id=record.record_id,
        dataset="d",
        annotator="ann1",
        status=ResponseStatus.submitted,
        values={"rating": 4},
    )
    done = CompletedRecord(record=record, dataset="d", responses=[response])
    assert CompletedRecord.model_validate_json(done.to_bytes()).responses[0].values == {"rating": 4}
    stranger = response.model_copy(update={"record_id": "other"})
    with pytest.raises(ValidationError, match="responses for other records"):
        CompletedRecord(record=record, dataset="d", responses=[stranger])


def test_annotator_response_status_is_checked() -> None:
    with pytest.raises(ValidationError, match="status"):
        AnnotatorResponse.model_validate(
            {"record_id": "r", "dataset": "d", "annotator": "a", "status": "maybe"}
        )


def test_topics_and_dead_letter_names() -> None:
    assert len(set(ALL_TOPICS)) == len(ALL_TOPICS)
    assert dead_letter_topic("records.judged") == "records.judged.dlq"
