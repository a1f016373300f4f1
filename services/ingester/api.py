"""The ingester's HTTP API: records (`/v1/records`), OTLP traces and logs (`/v1/traces`,
`/v1/logs`), health.

Bodies are bounded before they are parsed (`bodies`, `bounded_json`, the OTLP span and log
record counts) and each record is checked on its own (`pipeline`): one bad item is a per-item
4xx with its field path, never a 500 for the batch. OTLP spans and the GenAI log events that
carry their content are joined by `otlp_ingest`. The OpenAPI document (`openapi_doc`)
describes every body.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from services.ingester.auth import KeyRing
from services.ingester.bodies import decode_content, off_the_loop, read_body
from services.ingester.bounded_json import BodyError, parse_items
from services.ingester.idempotency import ReplyCache
from services.ingester.openapi_doc import (
    LOGS_RESPONSES,
    RECORDS_RESPONSES,
    TRACES_RESPONSES,
    install_openapi,
    logs_request_body,
    records_request_body,
    traces_request_body,
)
from services.ingester.otlp.logs import content_events
from services.ingester.otlp.wire import (
    LOGS,
    OTLPFormatError,
    OTLPTooManyItems,
    export_response,
    parse_export_request,
)
from services.ingester.otlp_ingest import OTLPIngest, Outcome, prepare_traces
from services.ingester.pipeline import IngestPipeline, IngestResult, PublishFailed
from shared.settings import IngestSettings
from shared.telemetry import context_from_headers

log = logging.getLogger("loopline.ingester.api")

JSON_TYPES = ("application/json",)
OTLP_TYPES = ("application/x-protobuf", "application/json")
T = TypeVar("T")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_decoded(request: Request, limit: int) -> bytes:
    """The body as sent, then decompressed (`Content-Encoding`): both within `limit` bytes."""
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "")
    if not encoding:
        return body
    return await off_the_loop(len(body), lambda: decode_content(body, encoding, limit))


def publish_failed(exc: PublishFailed) -> HTTPException:
    return HTTPException(
        503,
        f"{exc}; nothing of this request is remembered: retry it (record ids and the "
        "Idempotency-Key make the retry safe)",
        headers={"Retry-After": "1"},
    )


def answer_status(result: IngestResult) -> int:
    """200 when a record was accepted; else 413 when every record was too large, else 422."""
    if result.accepted or not result.rejected:
        return 200
    return 413 if all(r.status == 413 for r in result.rejected) else 422


def require_type(request: Request, allowed: tuple[str, ...]) -> str:
    kind = media_type(request)
    if kind not in allowed:
        shown = kind or "none"
        raise HTTPException(
            415, f"content type {shown} is not supported; send {' or '.join(allowed)}"
        )
    return kind


async def parsed_otlp(body: bytes, parse: Callable[[], T]) -> T:
    """`parse()` of an OTLP body, its refusals as HTTP answers (413 too many items, 400)."""
    try:
        return await off_the_loop(len(body), parse)
    except OTLPTooManyItems as exc:
        raise HTTPException(413, str(exc)) from None
    except OTLPFormatError as exc:
        raise HTTPException(400, str(exc)) from None


def create_app(
    pipeline: IngestPipeline,
    settings: IngestSettings,
    broker_ready: Any,
) -> FastAPI:
    """The FastAPI app. `broker_ready` is an async callable answering whether Kafka answers.
    `app.state.otlp` holds the OTLP span/event join: close it when the service stops."""
    app = FastAPI(
        title="Loopline ingester",
        version="1",
        description="Send LLM records (or OTLP traces of LLM calls) into Loopline flows.",
    )
    install_openapi(app, list(pipeline.steps))
    keys = KeyRing(settings.api_keys)
    replies = ReplyCache(settings.idempotency_window_s, settings.idempotency_max_bytes)
    otlp = OTLPIngest(pipeline, settings)
    app.state.otlp = otlp
    if keys.open:
        log.warning("ingester API is open: no LOOPLINE_INGEST__API_KEYS configured")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "broker unreachable"}})
    async def readyz() -> JSONResponse:
        """Ready when the Kafka broker answers."""
        if await broker_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "broker unreachable"}, status_code=503)

    @app.get("/v1/stats", tags=["health"])
    async def stats() -> dict[str, int]:
        """Counters since start: received, published, duplicates, unrouted, rejected, ...;
        and what waits in the OTLP span/event join now (entries, bytes)."""
        return {**vars(pipeline.stats), **otlp.stats}

    async def ingest_otlp(step: Awaitable[Outcome]) -> Outcome:
        try:
            return await step
        except PublishFailed as exc:
            raise publish_failed(exc) from exc

    async def ingest(items: list[Any], request: Request) -> Response:
        # Each record joins the caller's trace when it sent `traceparent`, else starts its own.
        caller = context_from_headers(request.headers.items())
        try:
            result = await pipeline.ingest(items, parents=lambda index: caller)
        except PublishFailed as exc:
            raise publish_failed(exc) from exc
        content = result.model_dump_json().encode()
        return Response(content, answer_status(result), media_type="application/json")

    @app.post(
        "/v1/records",
        tags=["records"],
        response_model=IngestResult,
        openapi_extra={"requestBody": records_request_body(settings.max_batch)},
        responses=RECORDS_RESPONSES,
    )
    async def post_records(request: Request) -> Response:
        """Ingest one record (a JSON object) or a batch (a JSON array).

        Each record is validated on its own: the answer lists the accepted record ids and, per
        rejected record, its index, a status (422, or 413 for a record too large for a Kafka
        message) and its field errors; the other records go on. Retries are safe: a
        client-given `record_id` or an `Idempotency-Key` header makes a record arrive
        downstream once. `Content-Encoding: gzip` or `deflate` is accepted.
        """
        key = keys.authenticate(request)
        require_type(request, JSON_TYPES)
        body = await read_decoded(request, settings.max_body_bytes)
        try:
            items = await off_the_loop(
                len(body), lambda: parse_items(body, settings.max_batch, settings.max_depth)
            )
        except BodyError as exc:
            raise HTTPException(exc.status, exc.detail) from None
        if not items:
            raise HTTPException(422, "empty batch: send at least one record")
        keys.authorize(key, {pipeline.flow_of(item) for item in items})
        idempotency_key = request.headers.get("idempotency-key")
        if not idempotency_key:
            return await ingest(items, request)
        scoped = f"{key.name if key else ''}:{idempotency_key}"
        fingerprint = hashlib.sha256(body).hexdigest()
        async with replies.claim(scoped):
            earlier = replies.get(scoped)
            if earlier is not None:
                if earlier.fingerprint != fingerprint:
                    raise HTTPException(
                        422,
                        "this Idempotency-Key was used for a different body; "
                        "use a new key for a new request",
                    )
                return Response(
                    earlier.content,
                    earlier.status,
                    media_type="application/json",
                    headers={"Idempotent-Replay": "true"},
                )
            response = await ingest(items, request)
            if response.status_code == 200:
                replies.add(scoped, fingerprint, response.status_code, bytes(response.body))
            return response

    @app.post(
        "/v1/traces",
        tags=["otlp"],
        openapi_extra={"requestBody": traces_request_body()},
        responses=TRACES_RESPONSES,
    )
    async def post_traces(request: Request) -> Response:
        """OTLP/HTTP trace export (protobuf or JSON, optionally gzip or deflate compressed).

        Spans of LLM calls (OpenTelemetry GenAI conventions) become records; other spans are
        ignored and counted. A span whose message content is not on it waits for the GenAI
        log events that carry it (`/v1/logs`). The flow is the span's or resource's
        `loopline.flow` attribute, else the `X-Loopline-Flow` header, else the default flow.
        Spans whose records are rejected are reported as a partial success.
        """
        key = keys.authenticate(request)
        kind = require_type(request, OTLP_TYPES)
        body = await read_decoded(request, settings.max_body_bytes)
        flow = request.headers.get("x-loopline-flow") or settings.default_flow
        prepared = await parsed_otlp(
            body, lambda: prepare_traces(parse_export_request(body, kind, settings.max_spans), flow)
        )
        outcome = await ingest_otlp(otlp.traces(prepared, lambda flows: keys.authorize(key, flows)))
        answer, answer_type = export_response(kind, outcome.rejected, outcome.reason)
        return Response(answer, 200, media_type=answer_type)

    @app.post(
        "/v1/logs",
        tags=["otlp"],
        openapi_extra={"requestBody": logs_request_body()},
        responses=LOGS_RESPONSES,
    )
    async def post_logs(request: Request) -> Response:
        """OTLP/HTTP logs export (protobuf or JSON, optionally gzip or deflate compressed).

        GenAI log-record events that carry an LLM call's messages
        (`gen_ai.client.inference.operation.details`, or the older `gen_ai.*.message` and
        `gen_ai.choice`) are joined to their span (sent to `/v1/traces`) by trace and span id;
        together they make the span's record. Whichever comes first waits for the other, up
        to `LOOPLINE_INGEST__OTLP_JOIN_WAIT_S` seconds (30). Other log records are ignored and
        counted; a content event without trace and span ids is rejected (a partial success
        naming where it is).
        """
        key = keys.authenticate(request)
        kind = require_type(request, OTLP_TYPES)
        body = await read_decoded(request, settings.max_body_bytes)
        conversion = await parsed_otlp(
            body,
            lambda: content_events(
                parse_export_request(body, kind, settings.max_log_records, LOGS)
            ),
        )
        outcome = await ingest_otlp(otlp.logs(conversion, lambda flows: keys.authorize(key, flows)))
        answer, answer_type = export_response(kind, outcome.rejected, outcome.reason, LOGS)
        return Response(answer, 200, media_type=answer_type)

    return app
