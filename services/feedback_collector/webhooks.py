"""`POST /argilla/webhooks`: Argilla's signed deliveries, turned into Loopline events.

- 413: the body is over `max_body_bytes` (refused from its declared length, or as soon as more
  was read, before verification: the rest is never read).
- 401: a delivery that fails verification (forged, altered, stale, from the future, unsigned,
  a malformed signature header or timestamp); nothing is emitted and the reason is in the body.
- 503: the collector cannot take it right now (it is starting: secret or state not loaded yet;
  Argilla or Kafka unreachable); Argilla's worker retries, and reconciliation catches up anyway.
- 400: signed but not a payload Argilla sends (the body names the fields, e.g. `data.id`).
- 200: handled, including events that are deliberately not emitted (a deleted response, a dataset
  no flow publishes to, a record deleted since), duplicates, and events too large to send
  (`status: dead-lettered`, see `emitter.py`).

`response.created` / `response.updated` -> `AnnotatorResponse`; `record.completed` ->
`CompletedRecord` with every response the record has (read back from Argilla), once per set of
responses; `response.deleted` is logged only: a later completion carries the record's current
responses.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.feedback_collector.argilla_reader import (
    ArgillaReader,
    ArgillaUnavailableError,
    RecordNotFoundError,
)
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import (
    HookRecord,
    HookResponse,
    WatchedDatasets,
    WebhookEnvelope,
    annotator_response,
    completed_record,
    loopline_record_id,
)
from services.feedback_collector.signatures import SignatureError, verify
from shared.argilla_metadata import trace_from_metadata

log = logging.getLogger("loopline.feedback_collector")

WEBHOOK_PATH = "/argilla/webhooks"
RESPONSE_WRITTEN = ("response.created", "response.updated")
# A delivery carries one record (with its metadata: the Loopline record, itself under the Kafka
# message limit) or one response with its record: a few times the message limit at most.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_LENGTH = re.compile(r"[0-9]{1,20}")


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """`path: message` per error (no inputs echoed back: they may be large)."""
    found = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False)[:5]:
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        found.append(f"{path or '(body)'}: {error['msg']}")
    return found


class Outcome:
    """An HTTP status and a JSON body for Argilla's worker (and for whoever reads the logs)."""

    def __init__(self, code: int, **body: Any) -> None:
        self.code = code
        self.body = body


class WebhookReceiver:
    def __init__(
        self,
        secrets: Callable[[], Sequence[str]],
        reader: ArgillaReader,
        watched: WatchedDatasets,
        emitter: Emitter,
        tolerance_s: float,
    ) -> None:
        self.secrets = secrets
        self.reader = reader
        self.watched = watched
        self.emitter = emitter
        self.tolerance_s = tolerance_s
        self.received = 0
        self.rejected = 0

    async def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        secrets = self.secrets()
        if not secrets:
            return Outcome(503, detail="the collector is starting (secret or state not loaded)")
        try:
            msg_id = verify(secrets, headers, body, tolerance_s=self.tolerance_s)
        except SignatureError as exc:
            self.rejected += 1
            log.warning("webhook delivery refused (401): %s", exc)
            return Outcome(401, detail=f"webhook signature verification failed: {exc}")
        self.received += 1
        try:
            envelope = WebhookEnvelope.model_validate_json(body)
        except ValidationError as exc:
            log.warning("webhook %s: not an Argilla event payload: %s", msg_id, problems(exc))
            return Outcome(400, detail="not an Argilla webhook payload", problems=problems(exc))
        try:
            return await self._dispatch(msg_id, envelope)
        except ValidationError as exc:
            found = problems(exc, "data")
            log.warning("webhook %s (%s): unexpected payload: %s", msg_id, envelope.type, found)
            return Outcome(400, detail=f"unexpected {envelope.type} payload", problems=found)
        except RecordNotFoundError as exc:
            log.info("webhook %s (%s): %s; ignored", msg_id, envelope.type, exc)
            return Outcome(200, status="ignored", reason="the record no longer exists in Argilla")
        except ArgillaUnavailableError as exc:
            log.warning("webhook %s (%s): %s; Argilla will retry", msg_id, envelope.type, exc)
            return Outcome(503, detail="Argilla is not reachable from the collector; retry later")
        except Exception:
            # Most likely Kafka: the event was not acknowledged, so Argilla must send it again.
            log.exception("webhook %s (%s): could not emit", msg_id, envelope.type)
            return Outcome(503, detail="could not emit the event; retry later")

    async def _dispatch(self, msg_id: str, envelope: WebhookEnvelope) -> Outcome:
        if envelope.type in RESPONSE_WRITTEN:
            return await self._response(envelope)
        if envelope.type == "record.completed":
            return await self._completed(envelope)
        if envelope.type == "response.deleted":
            deleted = HookResponse.model_validate(envelope.data)
            log.info(
                "response of %s to %s in %s/%s deleted: not emitted",
                deleted.user.username,
                deleted.record.external_id or deleted.record.id,
                deleted.record.dataset.workspace.name,
                deleted.record.dataset.name,
            )
            return Outcome(200, status="ignored", reason="deletions are not emitted")
        log.debug("webhook %s: event %s is not handled", msg_id, envelope.type)
        return Outcome(200, status="ignored", reason=f"event {envelope.type} is not handled")

    def _watched(self, record: HookRecord) -> bool:
        return self.watched.matches(record.dataset.workspace.name, record.dataset.name)

    async def _response(self, envelope: WebhookEnvelope) -> Outcome:
        response = HookResponse.model_validate(envelope.data)
        record = response.record
        if not self._watched(record):
            return Outcome(200, status="ignored", reason="no flow publishes to this dataset")
        self.reader.remember_user(response.user.id, response.user.username)
        record_id = loopline_record_id(record.external_id, record.metadata)
        if record_id is None:
            log.warning(
                "record %s in %s has no external id: response skipped",
                record.id,
                record.dataset.name,
            )
            return Outcome(200, status="ignored", reason="the record has no external id")
        event = annotator_response(
            record_id,
            record.dataset.name,
            response.user.username,
            response.status,
            response.values,
            response.updated_at,
        )
        if event is None:
            return Outcome(200, status="ignored", reason=f"unknown status {response.status}")
        sent = await self.emitter.response(event, record.id, trace_from_metadata(record.metadata))
        return Outcome(200, status=sent.value, record_id=record_id)

    async def _completed(self, envelope: WebhookEnvelope) -> Outcome:
        hook = HookRecord.model_validate(envelope.data)
        if not self._watched(hook):
            return Outcome(200, status="ignored", reason="no flow publishes to this dataset")
        try:
            uuid.UUID(hook.id)  # it goes into a URL: an id as Argilla makes them, nothing else
        except ValueError:
            return Outcome(400, detail="data.id: not an Argilla record id (a UUID)")
        record = await self.reader.record(hook.id)  # the payload has no responses
        names = await self.reader.usernames([r.user_id for r in record.responses])
        event = completed_record(record, hook.dataset.name, names.__getitem__)
        if event is None:
            return Outcome(200, status="ignored", reason="no valid loopline_record metadata")
        sent = await self.emitter.completed(
            event, hook.dataset.id, record.id, trace_from_metadata(record.metadata)
        )
        return Outcome(200, status=sent.value, record_id=event.record_id)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the webhook body is over the limit of {limit} bytes"}, status_code=413
    )


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to be over `limit` bytes (from its
    declared length, or once that much has been read): at most the limit and one chunk held."""
    declared = request.headers.get("content-length", "")
    if _LENGTH.fullmatch(declared) and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(receiver: WebhookReceiver, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(
        title="Loopline feedback collector",
        description="Receives Argilla's signed webhooks (Standard Webhooks).",
    )

    @app.post(WEBHOOK_PATH)
    async def argilla_webhook(request: Request) -> JSONResponse:
        body = await read_bounded(request, max_body_bytes)
        if body is None:
            log.warning("webhook delivery refused (413): body over %d bytes", max_body_bytes)
            return _too_large(max_body_bytes)
        outcome = await receiver.receive(request.headers, body)
        return JSONResponse(outcome.body, status_code=outcome.code)

    return app
