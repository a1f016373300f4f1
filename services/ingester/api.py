"""The ingester's HTTP API: records (`/v1/records`), OTLP traces (`/v1/traces`), health."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from services.ingester.auth import KeyRing
from services.ingester.dedup import SeenWindow
from services.ingester.otlp.genai import spans_to_records
from services.ingester.otlp.wire import OTLPFormatError, export_response, parse_export_request
from services.ingester.pipeline import IngestPipeline, IngestResult
from shared.settings import IngestSettings

log = logging.getLogger("loopline.ingester.api")

JSON_TYPES = ("application/json",)
OTLP_TYPES = ("application/x-protobuf", "application/json")
RECORD_EXAMPLE = {
    "flow": "default",
    "instruction": "Write a haiku about Kafka.",
    "responses": [{"text": "Logs flow like rivers...", "model": "my-app-model", "source": "app"}],
    "metadata": {"app": "poetry-bot"},
    "tags": ["prod"],
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 as soon as it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes exceeds the {limit} limit")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body exceeds the {limit} bytes limit")
    return bytes(body)


def require_type(request: Request, allowed: tuple[str, ...]) -> str:
    kind = media_type(request)
    if kind not in allowed:
        shown = kind or "none"
        raise HTTPException(
            415, f"content type {shown} is not supported; send {' or '.join(allowed)}"
        )
    return kind


def create_app(
    pipeline: IngestPipeline,
    settings: IngestSettings,
    broker_ready: Any,
) -> FastAPI:
    """The FastAPI app. `broker_ready` is an async callable answering whether Kafka answers."""
    app = FastAPI(
        title="Loopline ingester",
        version="1",
        description="Send LLM records (or OTLP traces of LLM calls) into Loopline flows.",
    )
    keys = KeyRing(settings.api_keys)
    replies: SeenWindow[tuple[int, bytes]] = SeenWindow(
        settings.idempotency_window_s, settings.idempotency_max_keys
    )
    if keys.open:
        log.warning("ingester API is open: no LOOPLINE_INGEST__API_KEYS configured")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready when the Kafka broker answers."""
        if await broker_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "broker unreachable"}, status_code=503)

    @app.get("/v1/stats", tags=["health"])
    async def stats() -> dict[str, int]:
        """Counters since start: received, published, duplicates, unrouted, rejected, ..."""
        return dict(vars(pipeline.stats))

    @app.post(
        "/v1/records",
        tags=["records"],
        response_model=IngestResult,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Record"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                            ]
                        },
                        "example": RECORD_EXAMPLE,
                    }
                },
            }
        },
        responses={
            401: {"description": "missing API key"},
            403: {"description": "invalid key, or a flow the key may not ingest into"},
            413: {"description": "body or batch too large"},
            415: {"description": "not application/json"},
            422: {"description": "every record was rejected (see `rejected`)"},
        },
    )
    async def post_records(request: Request) -> Response:
        """Ingest one record (a JSON object) or a batch (a JSON array).

        Each record is validated on its own: the answer lists the accepted record ids and, per
        rejected record, its index and field errors. Retries are safe: a client-given
        `record_id` or an `Idempotency-Key` header makes a record arrive downstream once.
        """
        key = keys.authenticate(request)
        require_type(request, JSON_TYPES)
        body = await read_body(request, settings.max_body_bytes)
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"body is not valid JSON: {exc}") from None
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise HTTPException(422, "empty batch: send at least one record")
        if len(items) > settings.max_batch:
            raise HTTPException(
                413, f"batch of {len(items)} records exceeds the limit of {settings.max_batch}"
            )
        keys.authorize(key, {pipeline.flow_of(item) for item in items})
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key:
            scoped = f"{key.name if key else ''}:{idempotency_key}"
            earlier = replies.get(scoped)
            if earlier is not None:
                return Response(
                    earlier[1],
                    earlier[0],
                    media_type="application/json",
                    headers={"Idempotent-Replay": "true"},
                )
        result = await pipeline.ingest(items)
        status = 422 if result.rejected and not result.accepted else 200
        content = result.model_dump_json().encode()
        if idempotency_key and status == 200:
            replies.add(scoped, (status, content))
        return Response(content, status, media_type="application/json")

    @app.post(
        "/v1/traces",
        tags=["otlp"],
        responses={415: {"description": "neither OTLP protobuf nor OTLP JSON"}},
    )
    async def post_traces(request: Request) -> Response:
        """OTLP/HTTP trace export (protobuf or JSON).

        Spans of LLM calls (OpenTelemetry GenAI conventions) become records; other spans are
        ignored and counted. The flow is the span's or resource's `loopline.flow` attribute,
        else the `X-Loopline-Flow` header, else the default flow.
        """
        key = keys.authenticate(request)
        kind = require_type(request, OTLP_TYPES)
        body = await read_body(request, settings.max_body_bytes)
        try:
            export = parse_export_request(body, kind)
        except OTLPFormatError as exc:
            raise HTTPException(400, str(exc)) from None
        flow = request.headers.get("x-loopline-flow") or settings.default_flow
        converted = spans_to_records(export, flow)
        pipeline.stats_otlp(converted.ignored_not_llm, converted.ignored_no_content)
        if converted.records:
            keys.authorize(key, {pipeline.flow_of(item) for item in converted.records})
            result = await pipeline.ingest(converted.records)
            if result.rejected:
                log.warning(
                    "OTLP: %d span(s) rejected: %s", len(result.rejected), result.rejected[0].errors
                )
        answer, answer_type = export_response(kind)
        return Response(answer, 200, media_type=answer_type)

    return app
