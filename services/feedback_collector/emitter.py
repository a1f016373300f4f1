"""Publishing the collector's events: each completion once per set of responses, and what cannot
be sent dead-lettered with its reason instead of stopping everything.

- **Responses** (`AnnotatorResponse`): webhooks and reconciliation see the same ones; a bounded
  memory of what this process sent keeps the topic tidy (consumers dedupe by record id and
  annotator anyway, and after a restart the overlap re-sends a few).
- **Completions** (`CompletedRecord`): announced once per (dataset, record id, set of
  responses), whichever path sees the record and across restarts: the set's digest is kept in
  the collector's state (`state.py`) and compared before sending. The set is each response's
  annotator, status and values: an answer submitted again unchanged (a new `updated_at`, as a
  re-submission or a late webhook reading the record back gives) is not a change; a changed
  answer or a new one is, and the record is announced again with all its responses.
- **Too large to send**: a completion carries the record and every response, so it can outgrow
  the message limit (`LOOPLINE_KAFKA__MAX_MESSAGE_BYTES`) the record itself fit. The size rule
  of `shared.message_size` applies: the judges' raw outputs are cut first; if it still does not
  fit (or the broker refuses an event for its own sake: `shared.failures` says which failures
  are permanent), it goes to the dead-letter topic of its topic instead
  (`records.completed.dlq`, `feedback.responses.dlq`), with the reason (its size and the
  limit) in the usual dead-letter headers. The event itself cannot fit there either,
  so the dead letter's body is a small reference: the record id, the dataset, the Argilla
  record id and the event's size. The record stays in Argilla. A dead-lettered completion is
  remembered like a sent one, so later passes and webhooks do not dead-letter it again until
  its responses change. Anything else (the broker unreachable) is raised: the caller retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Tracer

from services.feedback_collector.state import CollectorState
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
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    AnnotatorResponse,
    CompletedRecord,
    Record,
    dead_letter_topic,
)
from shared.failures import is_permanent
from shared.message_size import RecordTooLarge, fit, payload_limit
from shared.metrics import record_passed
from shared.settings import KafkaSettings
from shared.telemetry import context_from_traceparent, link_to, record_span, tracer_of

log = logging.getLogger("loopline.feedback_collector")

SERVICE = "feedback-collector"


class Send(Protocol):
    """Publish one message; returns once the broker acknowledged it."""

    async def __call__(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str] | None = None
    ) -> None: ...


class Sent(StrEnum):
    sent = "sent"
    duplicate = "duplicate"
    dead_lettered = "dead-lettered"


def response_key(event: AnnotatorResponse) -> Hashable:
    return (
        "response",
        event.dataset,
        event.record_id,
        event.annotator,
        event.status.value,
        event.responded_at.isoformat(),
    )


def response_set(dataset_id: str, event: CompletedRecord) -> str:
    """The digest of a completion's set of responses: (annotator, status, values) each, in no
    particular order, with the dataset and record ids."""
    answers = sorted(
        json.dumps([r.annotator, r.status.value, r.values], sort_keys=True, ensure_ascii=False)
        for r in event.responses
    )
    canonical = json.dumps([dataset_id, event.record_id, answers], ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


class Emitter:
    """Sends `AnnotatorResponse` and `CompletedRecord` events keyed by record id."""

    def __init__(
        self,
        send: Send,
        state: CollectorState | None = None,
        memory: int = 100_000,
        max_message_bytes: int | None = None,
        kafka: KafkaSettings | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._send = send
        self.tracer = tracer if tracer is not None else tracer_of(None)
        # Whose topics the events go to (`kafka.topic`); none: the names as they are.
        self.kafka = kafka if kafka is not None else KafkaSettings()
        self.max_message_bytes = max_message_bytes
        self.state = state if state is not None else CollectorState(_discard)
        self._sent: OrderedDict[Hashable, None] = OrderedDict()
        self._memory = memory
        self._completing = asyncio.Lock()  # one completion at a time: no check-then-send race
        self.responses_sent = 0
        self.completed_sent = 0
        self.dead_lettered = 0
        # The flow a dataset belongs to, for the metrics (`WatchedDatasets.flow_of`).
        self.flow_of: Callable[[str], str] = lambda dataset: "unknown"

    def _seen(self, key: Hashable) -> bool:
        if key in self._sent:
            self._sent.move_to_end(key)
            return True
        return False

    def _remember(self, key: Hashable) -> None:
        self._sent[key] = None
        while len(self._sent) > self._memory:
            self._sent.popitem(last=False)

    async def response(
        self, event: AnnotatorResponse, argilla_record_id: str = "", traceparent: str | None = None
    ) -> Sent:
        """Send one response (unless this process sent it before), in the record's trace
        (`traceparent`, as the publisher stored it in Argilla)."""
        key = response_key(event)
        if self._seen(key):
            return Sent.duplicate
        reference = {
            "record_id": event.record_id,
            "dataset": event.dataset,
            "annotator": event.annotator,
            "argilla_record_id": argilla_record_id,
        }
        outcome = await self._publish(
            FEEDBACK_RESPONSES, event.record_id, event, reference, traceparent
        )
        self._remember(key)
        if outcome == Sent.sent:
            self.responses_sent += 1
            record_passed(SERVICE, self.flow_of(event.dataset), "answered")
            log.debug(
                "response: %s %s %s in %s",
                event.annotator,
                event.status.value,
                event.record_id,
                event.dataset,
            )
        return outcome

    async def completed(
        self,
        event: CompletedRecord,
        dataset_id: str,
        argilla_record_id: str = "",
        traceparent: str | None = None,
    ) -> Sent:
        """Announce a completed record, unless it was announced with the same responses; in
        the record's trace (`traceparent`)."""
        digest = response_set(dataset_id, event)
        async with self._completing:
            before = self.state.announced(dataset_id, event.record_id)
            if before is not None and before.responses == digest:
                return Sent.duplicate if before.outcome == Sent.sent else Sent(before.outcome)
            reference = {
                "record_id": event.record_id,
                "dataset": event.dataset,
                "argilla_record_id": argilla_record_id,
                "responses": len(event.responses),
            }
            outcome = await self._publish(
                RECORDS_COMPLETED, event.record_id, self._fit(event), reference, traceparent
            )
            await self.state.save_announced(dataset_id, event.record_id, digest, outcome.value)
        if outcome == Sent.sent:
            self.completed_sent += 1
            record_passed(SERVICE, event.record.flow, "completed")
            log.debug(
                "completed: %s in %s with %d response(s)",
                event.record_id,
                event.dataset,
                len(event.responses),
            )
        return outcome

    async def _publish(
        self,
        topic: str,
        record_id: str,
        event: AnnotatorResponse | CompletedRecord,
        reference: dict[str, Any],
        traceparent: str | None = None,
    ) -> Sent:
        with record_span(
            self.tracer,
            f"feedback-collector emit {topic}",
            record_id,
            parent=context_from_traceparent(traceparent) if traceparent else None,
            links=link_to(trace.get_current_span()),  # the webhook request or the pass
        ):
            return await self._publish_in_trace(topic, record_id, event, reference)

    async def _publish_in_trace(
        self,
        topic: str,
        record_id: str,
        event: AnnotatorResponse | CompletedRecord,
        reference: dict[str, Any],
    ) -> Sent:
        value = event.to_bytes()
        try:
            limit = self.max_message_bytes
            if limit is not None and len(value) > payload_limit(limit):
                raise RecordTooLarge(
                    f"{type(event).__name__} of record {record_id} is {len(value)} bytes, over "
                    f"the {payload_limit(limit)}-byte room under the message limit of {limit} "
                    "bytes (LOOPLINE_KAFKA__MAX_MESSAGE_BYTES)"
                )
            await self._send(self.kafka.topic(topic), record_id.encode(), value)
        except Exception as exc:
            if not is_permanent(exc):
                raise
            await self._dead_letter(topic, record_id, {**reference, "bytes": len(value)}, exc)
            return Sent.dead_lettered
        return Sent.sent

    def _fit(self, event: CompletedRecord) -> CompletedRecord:
        """The completion, its record's judges' raw outputs cut when that is what it takes to
        fit the message limit (`shared.message_size`); as it was otherwise (`_publish` then
        dead-letters it when it is still too large)."""
        limit = self.max_message_bytes
        if limit is None or len(event.to_bytes()) <= payload_limit(limit):
            return event
        around = len(event.to_bytes()) - len(event.record.to_bytes())  # the responses and all
        try:
            record = fit(event.record, limit - around)
        except RecordTooLarge:
            return event
        return event.model_copy(update={"record": Record.model_validate_json(record)})

    async def _dead_letter(
        self, topic: str, record_id: str, reference: dict[str, Any], exc: BaseException
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        topic, dead_letters = self.kafka.topic(topic), self.kafka.topic(dead_letter_topic(topic))
        headers = {
            H_ERROR: error,
            H_ERROR_TYPE: type(exc).__name__,
            H_SERVICE: SERVICE,
            H_ATTEMPTS: "1",
            H_TOPIC: topic,
            H_PARTITION: "",
            H_OFFSET: "",
            H_REPLAYABLE: "false",  # a reference to the event, not the event
        }
        body = json.dumps(reference, ensure_ascii=False).encode()
        await self._send(dead_letters, record_id.encode(), body, headers)
        self.dead_lettered += 1
        log.error(
            "could not send %s of record %s in %s (%d bytes): %s; dead-lettered to %s",
            topic,
            record_id,
            reference.get("dataset"),
            reference.get("bytes", 0),
            error,
            dead_letters,
        )


async def _discard(topic: str, key: bytes, value: bytes) -> None:
    """The state writer of an emitter without a persistent state (tests, tools)."""
