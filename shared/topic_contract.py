"""What each topic carries: its event, its Kafka message key, and the headers of its messages.

`shared.events` names the topics and defines the events; this module says which event goes on
which topic and how its messages are keyed, for the topics' AsyncAPI document
(`shared.asyncapi`). A unit test keeps it true to the code that publishes.

Dead letters: a message a service could not handle goes to `<topic>.dlq` with its original
bytes and key and the headers of `DeadLetterHeaders` (`shared.dead_letters`); an event the
feedback collector could not send (too large) goes there as an `UnsentEventReference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.dead_letters import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_OFFSET,
    H_PARTITION,
    H_REPLAYABLE,
    H_SERVICE,
    H_TOPIC,
    MAX_ERROR_CHARS,
)
from shared.events import (
    DATASETS_EXPORTED,
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INCOMING,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    RECORDS_UNROUTED,
    AnnotatorResponse,
    CompletedRecord,
    DatasetExported,
    PublishedRecord,
    Record,
)

RECORD_ID_KEY = (
    "The record's `record_id`, UTF-8: every message about one record lands on one partition, "
    "so a record's events stay in order."
)


@dataclass(frozen=True)
class TopicContract:
    """One topic: the event each message is (JSON), what the message key is, what it is for."""

    event: type[BaseModel]
    key: str
    summary: str
    description: str = ""


TOPICS: dict[str, TopicContract] = {
    RECORDS_INCOMING: TopicContract(
        Record,
        "Any (the producing app's choice; the record id keeps one record's messages in order). "
        "The ingester does not read it: a record without `record_id` gets one derived from "
        "its content.",
        "Records that apps produce to Kafka directly, one JSON record per message.",
        "The same record as the ingester's HTTP API takes (`POST /v1/records`): validated, "
        "redacted, deduplicated and routed like any other.",
    ),
    RECORDS_INGESTED: TopicContract(
        Record,
        RECORD_ID_KEY,
        "Records taken in, for flows that generate candidate responses.",
    ),
    RECORDS_UNROUTED: TopicContract(
        Record,
        RECORD_ID_KEY,
        "Records no flow's router took, kept with the router's reason (`route`).",
    ),
    RECORDS_GENERATED: TopicContract(
        Record,
        RECORD_ID_KEY,
        "Records with candidate responses, for flows that judge them.",
    ),
    RECORDS_JUDGED: TopicContract(
        Record,
        RECORD_ID_KEY,
        "Records ready for people or for export: judged, or with no judge stage left.",
        "A flow with a `publish` stage sends them to Argilla (all, or those its `publish.when` "
        "picks); the exporter keeps the ones the flow accepts without people.",
    ),
    RECORDS_PUBLISHED: TopicContract(
        PublishedRecord,
        RECORD_ID_KEY,
        "A record landed in an Argilla dataset.",
    ),
    FEEDBACK_RESPONSES: TopicContract(
        AnnotatorResponse,
        RECORD_ID_KEY,
        "Annotators' responses from Argilla, one per record and annotator (at least once: "
        "consumers dedupe by record id and annotator).",
    ),
    RECORDS_COMPLETED: TopicContract(
        CompletedRecord,
        "The record's `record_id`, UTF-8 (`record.record_id` of the event).",
        "Records with every response their flow requires, announced once per set of responses.",
    ),
    DATASETS_EXPORTED: TopicContract(
        DatasetExported,
        "`<flow>/<format>`, UTF-8: one format's versions stay in order.",
        "A dataset version the exporter wrote, announced once it is complete.",
    ),
}


class EventHeaders(BaseModel):
    """Headers of an event's message, as FastStream and Loopline's telemetry write them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    traceparent: str | None = Field(
        default=None,
        description="W3C trace context of the record's trace (every stage's spans join it).",
    )
    tracestate: str | None = Field(default=None, description="W3C trace state, when set.")
    correlation_id: str | None = Field(default=None, description="FastStream's id of the message.")


class DeadLetterHeaders(BaseModel):
    """Headers of a dead letter (UTF-8 strings): why and where it failed (`shared.dead_letters`).
    `loopline dlq replay` puts the message back on `loopline-source-topic`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    error: str = Field(
        alias=H_ERROR,
        max_length=MAX_ERROR_CHARS,
        description="The error, `<type>: <message>`, cut to its first characters.",
    )
    error_type: str = Field(alias=H_ERROR_TYPE, description="The exception's class name.")
    service: str = Field(alias=H_SERVICE, description="The service that gave up on it.")
    attempts: str = Field(
        alias=H_ATTEMPTS, pattern=r"^[0-9]+$", description="Attempts made before giving up."
    )
    source_topic: str = Field(
        alias=H_TOPIC, description="The topic the message was on, as named on the cluster."
    )
    source_partition: str = Field(
        alias=H_PARTITION, pattern=r"^[0-9]*$", description="Its partition; empty if none."
    )
    source_offset: str = Field(
        alias=H_OFFSET, pattern=r"^[0-9]*$", description="Its offset; empty if none."
    )
    replayable: Literal["false"] | None = Field(
        default=None,
        alias=H_REPLAYABLE,
        description='"false" when the body is a reference to what could not be sent, not the '
        "message itself: `loopline dlq replay` leaves it alone.",
    )
    traceparent: str | None = Field(
        default=None, description="W3C trace context of the span that dead-lettered it."
    )


class UnsentEventReference(BaseModel):
    """What the feedback collector dead-letters when an event would not fit under the message
    limit: which record, dataset and response it was about, and its size."""

    model_config = ConfigDict(extra="forbid")

    record_id: str
    dataset: str
    argilla_record_id: str = Field(description="The Argilla record's own id.")
    annotator: str | None = Field(default=None, description="For a response (feedback.responses).")
    responses: int | None = Field(
        default=None, ge=0, description="For a completion (records.completed): its responses."
    )
    bytes: int = Field(ge=0, description="The event's size in bytes.")
