"""The ingester's OpenAPI document: the record schema, every request body, every answer.

`/v1/records`, `/v1/traces` and `/v1/logs` read their bodies themselves (to bound them before
parsing), so FastAPI cannot derive their request schemas: they are declared here, and
`install_openapi` adds the schemas they reference (`Record` and the models it uses, `Error`,
`OTLPTraces`, `OTLPLogs`) to the document's components, with the bearer key scheme.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.events import Record

__all__ = [
    "LOGS_RESPONSES",
    "RECORDS_RESPONSES",
    "TRACES_RESPONSES",
    "install_openapi",
    "logs_request_body",
    "records_request_body",
    "traces_request_body",
]

SCHEMAS = "#/components/schemas/"
RECORD_EXAMPLE = {
    "flow": "default",
    "instruction": "Write a haiku about Kafka.",
    "responses": [{"text": "Logs flow like rivers...", "model": "my-app-model", "source": "app"}],
    "metadata": {"app": "poetry-bot"},
    "tags": ["prod"],
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "What was wrong with the request as a whole.",
}


def _maybe(kind: str, **more: Any) -> dict[str, Any]:
    """A field of protobuf's JSON mapping: its type, or null (the field's default)."""
    return {"type": [kind, "null"], **more}


def _otlp_schema(what: str, resources: str, scopes: str, items: str) -> dict[str, Any]:
    """The outer structure of an OTLP/JSON export request; its messages are OTLP's."""
    return {
        "type": "object",
        "description": (
            f"An OTLP/JSON {what} (trace and span ids in hex); see "
            "https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding"
        ),
        "properties": {
            resources: _maybe(
                "array",
                items={
                    "type": "object",
                    "properties": {
                        "resource": _maybe("object"),
                        scopes: _maybe(
                            "array",
                            items={
                                "type": "object",
                                "properties": {
                                    "scope": _maybe("object"),
                                    items: _maybe("array", items={"type": "object"}),
                                },
                            },
                        ),
                    },
                },
            )
        },
    }


OTLP_TRACES_SCHEMA = _otlp_schema(
    "ExportTraceServiceRequest", "resourceSpans", "scopeSpans", "spans"
)
OTLP_LOGS_SCHEMA = _otlp_schema(
    "ExportLogsServiceRequest", "resourceLogs", "scopeLogs", "logRecords"
)
# A key when keys are configured; open otherwise.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}, {}]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json({"$ref": f"{SCHEMAS}Error"})}


def _result_or_error(description: str) -> dict[str, Any]:
    either = {"anyOf": [{"$ref": f"{SCHEMAS}IngestResult"}, {"$ref": f"{SCHEMAS}Error"}]}
    return {"description": description, "content": _json(either)}


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("the body is not what the content type says, or not valid gzip/deflate"),
    401: _error("missing or malformed API key"),
    403: _error("invalid key, or a flow the key may not ingest into"),
    415: _error("a content type or content encoding that is not supported"),
    503: _error("the broker did not take the records: retry (safe)"),
}
RECORDS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    413: _result_or_error("body or batch too large, or every record too large for a message"),
    422: _result_or_error(
        "every record was rejected (see `rejected`), an empty batch, or an Idempotency-Key "
        "reused for another body"
    ),
}


def _export_answer(what: str) -> dict[str, Any]:
    return {
        "description": what,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }


TRACES_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    200: _export_answer("an ExportTraceServiceResponse (a partial success names rejected spans)"),
    413: _error("body too large, or more spans than allowed"),
}
LOGS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES,
    200: _export_answer(
        "an ExportLogsServiceResponse (a partial success counts the rejected log records and "
        "names the first: a GenAI content event without trace and span ids, or one whose "
        "record was refused)"
    ),
    403: _error("invalid key, or a flow of a span these events complete that the key may not"),
    413: _error("body too large, or more log records than allowed"),
}


def records_request_body(max_batch: int) -> dict[str, Any]:
    record = {"$ref": f"{SCHEMAS}Record"}
    batch = {"type": "array", "items": record, "minItems": 1, "maxItems": max_batch}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [record, batch]}, "example": RECORD_EXAMPLE}
        },
    }


def traces_request_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": f"{SCHEMAS}OTLPTraces"}},
        },
    }


def logs_request_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": f"{SCHEMAS}OTLPLogs"}},
        },
    }


def record_schemas(flows: list[str]) -> dict[str, Any]:
    """`Record` as a client sends it, and the schemas it uses: `flow` one of `flows` (or left
    to the default), and an `instruction` or non-empty `messages` (the record's own rule)."""
    schema = Record.model_json_schema(ref_template=SCHEMAS + "{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    schema["required"] = [name for name in schema.get("required", []) if name != "flow"]
    if not schema["required"]:
        del schema["required"]
    flow = schema["properties"]["flow"]
    flow["description"] = "the flow; LOOPLINE_INGEST__DEFAULT_FLOW when left out"
    if flows:
        flow["enum"] = sorted(flows)
    schema["anyOf"] = [
        {
            "required": ["instruction"],
            "properties": {"instruction": {"type": "string", "minLength": 1}},
        },
        {"required": ["messages"], "properties": {"messages": {"type": "array", "minItems": 1}}},
    ]
    return {**defs, "Record": schema}


def install_openapi(app: FastAPI, flows: list[str]) -> None:
    """Make `app.openapi()` return the document with every schema it references (`flows`: the
    flows this ingester knows)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(
                {
                    **record_schemas(flows),
                    "Error": ERROR_SCHEMA,
                    "OTLPTraces": OTLP_TRACES_SCHEMA,
                    "OTLPLogs": OTLP_LOGS_SCHEMA,
                }
            )
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path in ("/v1/records", "/v1/traces", "/v1/logs"):
                document["paths"][path]["post"]["security"] = BEARER
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
