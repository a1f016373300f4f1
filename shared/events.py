"""The events that flow between Loopline services, and the topics they flow on.

Every event is a pydantic model serialised as JSON on the wire and carries a `schema_version`.
Topics are keyed by `record_id`, so the events of one record stay in order.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1

# Topic names, logical: `KafkaSettings.topic(name)` is the topic on the cluster (behind the flow
# set's `topic_prefix`). Each input topic has a dead-letter topic named `<topic>.dlq`.
RECORDS_INCOMING = "records.incoming"  # raw records that apps produce to Kafka directly
RECORDS_INGESTED = "records.ingested"
RECORDS_UNROUTED = "records.unrouted"  # records a flow's router did not take, kept with the reason
RECORDS_GENERATED = "records.generated"
RECORDS_JUDGED = "records.judged"
RECORDS_PUBLISHED = "records.published"
FEEDBACK_RESPONSES = "feedback.responses"
RECORDS_COMPLETED = "records.completed"
DATASETS_EXPORTED = "datasets.exported"

ALL_TOPICS: tuple[str, ...] = (
    RECORDS_INCOMING,
    RECORDS_INGESTED,
    RECORDS_UNROUTED,
    RECORDS_GENERATED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    DATASETS_EXPORTED,
)
DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of `topic`, by its logical name (the set's is
    `kafka.topic(dead_letter_topic(t))`)."""
    return f"{topic}{DLQ_SUFFIX}"


def utc_now() -> datetime:
    return datetime.now(UTC)


class NewerSchemaError(Exception):
    """An event written by a newer Loopline than this service (a higher `schema_version`) that
    this service cannot read. Not the record's fault: the service waits for its upgrade
    (a transient failure) instead of dead-lettering the record."""


def _schema_version_of(body: bytes | str) -> int | None:
    try:
        found = json.loads(body)
    except ValueError:
        return None
    version = found.get("schema_version") if isinstance(found, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


class Event(BaseModel):
    """Base of every event: strict about unknown fields, versioned, JSON on the wire.

    `schema_version` rules (docs/operations.md, "Upgrades"): adding an optional field or a new
    event needs no bump, but readers must be upgraded before writers (unknown fields are
    refused); anything an older reader would misread bumps it. A reader meeting a newer version
    it cannot read waits (`NewerSchemaError`, transient) rather than dead-lettering."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


ModelT = TypeVar("ModelT", bound=BaseModel)


def read_event(model: type[ModelT], body: bytes | str) -> ModelT:
    """The `model` in a consumed message's `body` (JSON). A body that does not validate
    raises `ValidationError` (the record is bad), unless it claims a newer `schema_version`
    than this code's: then `NewerSchemaError` (this service is due for an upgrade)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        version = _schema_version_of(body)
        if version is not None and version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"a {model.__name__} of schema_version {version}, written by a newer "
                f"Loopline; this service reads schema_version {SCHEMA_VERSION}: waiting "
                "for its upgrade (docs/operations.md, Upgrades)"
            ) from exc
        raise


class Role(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


class TokenUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CandidateResponse(BaseModel):
    """One response to the record's prompt: from the production app or from a generator model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    model: str
    # app: the production app's own answer; dataset: imported with the record; generator: Loopline's
    source: Literal["app", "dataset", "generator"] = "generator"
    params: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    created_at: datetime = Field(default_factory=utc_now)
    # The endpoint's id of the completion (`gen_ai.response.id` of its LLM span), when known:
    # the judge's evaluation events name it.
    response_id: str | None = None


class Rating(BaseModel):
    """One aspect's score for one response, with the judge's reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aspect: str
    score: float
    rationale: str = ""
    criteria_met: list[str] = Field(default_factory=list)  # additive rubrics: the points earned


class Judgment(BaseModel):
    """One judge's verdict on the record's responses, as produced by one rubric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rubric: str
    judge_model: str
    status: Literal["ok", "failed"] = "ok"
    # ratings[i] belongs to responses[i] of the record (the shuffle already undone).
    ratings: list[list[Rating]] = Field(default_factory=list)
    # Pairwise: the index (into the record's responses) of the better one; None with tie=True.
    preferred: int | None = None
    tie: bool = False
    rationale: str = ""
    # The order the judge saw: order[k] is the record's index of the response shown k-th.
    order: list[int] = Field(default_factory=list)
    repeat: int = Field(default=0, ge=0)  # which of the flow's repeated judgments this is
    margin: float | None = None  # best minus worst overall score
    agreement: float | None = None  # across repeated judgments, 0..1
    raw_output: str | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utc_now)


class RouteDecision(BaseModel):
    """What the flow's router decided for a record, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routed: bool
    router: str
    reason: str


class ReviewReason(StrEnum):
    """Why a judged record went to people, or why it did not (`shared/review.py` decides)."""

    every_record = "every_record"  # the flow has no `publish.when`: people see everything
    judgment_failed = "judgment_failed"
    low_margin = "low_margin"
    disagreement = "disagreement"
    audit_sample = "audit_sample"
    judge_sure = "judge_sure"  # none of the above: auto-accepted


class ReviewDecision(BaseModel):
    """Where a judged record goes: to people (`to_people`) or auto-accepted, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to_people: bool
    reason: ReviewReason
    detail: str = ""


def content_record_id(
    instruction: str | None,
    messages: list[ChatMessage] | None,
    context: str | None,
    responses: list[str] | None = None,
) -> str:
    """A stable id derived from a record's content, for records that arrive without one.

    The prompt and the responses it came with count: the same question answered differently
    by the app is a different record.
    """
    payload = {
        "instruction": instruction,
        "messages": [m.model_dump(mode="json") for m in messages or []],
        "context": context,
        "responses": responses or [],
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Record(Event):
    """A record as it flows: a prompt (instruction or chat), its responses and their judgments."""

    record_id: str = Field(default="", max_length=128)
    flow: str = Field(min_length=1)
    instruction: str | None = None
    messages: list[ChatMessage] | None = None
    context: str | None = None
    responses: list[CandidateResponse] = Field(default_factory=list)
    judgments: list[Judgment] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    route: RouteDecision | None = None
    # Set by the publisher (sent to people) or the exporter (auto-accepted) of a flow whose
    # `publish.when` chooses which judged records people see; None otherwise.
    review: ReviewDecision | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _prompt_and_id(self) -> Record:
        if not self.instruction and not self.messages:
            raise ValueError("a record needs an `instruction` or non-empty `messages`")
        if not self.record_id:
            # Frozen model: set the derived id through object.__setattr__ once, at validation.
            object.__setattr__(
                self,
                "record_id",
                content_record_id(
                    self.instruction,
                    self.messages,
                    self.context,
                    [r.text for r in self.responses],
                ),
            )
        return self

    def prompt_messages(self) -> list[ChatMessage]:
        """The prompt as chat messages, whichever way it was given."""
        if self.messages:
            return list(self.messages)
        user_text = self.instruction or ""
        if self.context:
            user_text = f"{user_text}\n\n{self.context}"
        return [ChatMessage(role=Role.user, content=user_text)]


class ResponseStatus(StrEnum):
    submitted = "submitted"
    discarded = "discarded"
    draft = "draft"


class AnnotatorResponse(Event):
    """One annotator's response to one record in one Argilla dataset."""

    record_id: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    annotator: str = Field(min_length=1)
    status: ResponseStatus
    values: dict[str, Any] = Field(default_factory=dict)
    responded_at: datetime = Field(default_factory=utc_now)


class CompletedRecord(Event):
    """A record that has all the responses its flow requires, with every one of them."""

    record: Record
    dataset: str = Field(min_length=1)
    responses: list[AnnotatorResponse] = Field(default_factory=list)
    completed_at: datetime = Field(default_factory=utc_now)

    @property
    def record_id(self) -> str:
        return self.record.record_id

    @model_validator(mode="after")
    def _responses_belong_to_record(self) -> CompletedRecord:
        strangers = {r.record_id for r in self.responses} - {self.record.record_id}
        if strangers:
            raise ValueError(f"responses for other records: {sorted(strangers)}")
        return self


class PublishedRecord(Event):
    """A record that landed in Argilla."""

    record_id: str = Field(min_length=1)
    flow: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    published_at: datetime = Field(default_factory=utc_now)


class DatasetExported(Event):
    """A dataset version the exporter wrote."""

    flow: str = Field(min_length=1)
    format: str = Field(min_length=1)
    version: int = Field(ge=1)
    location: str
    rows: int = Field(ge=0)
    exported_at: datetime = Field(default_factory=utc_now)
