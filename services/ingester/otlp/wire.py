"""OTLP/HTTP export requests on the wire (traces and logs): content types, decoding, ids, the
response.

An OTLP exporter POSTs an `ExportTraceServiceRequest` (or, for logs, an
`ExportLogsServiceRequest`: `signal=LOGS`) as binary protobuf or as OTLP/JSON; this module
decodes either (`parse_export_request`), answers it (`export_response`) and turns OTLP
attribute values into plain Python values (`attributes`). What the spans and log records mean
(the GenAI semantic conventions) is `services.ingester.otlp.genai` and `.logs`.

The batch limit is checked before the body is parsed: spans (log records) are counted on the
protobuf wire (tags and lengths only, stopping past the limit) or in the OTLP/JSON document
before protobuf's (slow) JSON mapping runs, and OTLP/JSON nested deeper than any OTLP message is
refused unparsed. Both requests share their shape: resource entries (field 1) of scope entries
(field 2) of items (field 2), so one walk counts either.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from services.ingester.bounded_json import scan

__all__ = [
    "LOGS",
    "TRACES",
    "OTLPFormatError",
    "OTLPTooManyItems",
    "Signal",
    "any_value",
    "as_dicts",
    "attributes",
    "export_response",
    "parse_export_request",
]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF_CONTENT_TYPE, "application/protobuf"})
_JSON_TYPES = frozenset({JSON_CONTENT_TYPE})
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
_GZIP_MAGIC = b"\x1f\x8b"
# Deeper OTLP/JSON is no OTLP message: protobuf parses at most 100 nested messages.
OTLP_JSON_MAX_DEPTH = 256
# Field numbers, the same in both requests: Export*ServiceRequest.resource_spans/_logs,
# Resource*.scope_spans/_logs, Scope*.spans/log_records.
_RESOURCES, _SCOPES, _ITEMS = 1, 2, 2


@dataclass(frozen=True)
class Signal:
    """One kind of OTLP export: its messages and the names of its nested fields."""

    items: str  # what the request carries, for messages: "spans", "log records"
    request: Any
    response: Any
    partial_success: Any
    rejected_field: str
    resources: tuple[str, str]  # (OTLP/JSON's camelCase, protobuf's field name)
    scopes: tuple[str, str]
    entries: tuple[str, str]


TRACES = Signal(
    "spans",
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    ExportTracePartialSuccess,
    "rejected_spans",
    ("resourceSpans", "resource_spans"),
    ("scopeSpans", "scope_spans"),
    ("spans", "spans"),
)
LOGS = Signal(
    "log records",
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ExportLogsPartialSuccess,
    "rejected_log_records",
    ("resourceLogs", "resource_logs"),
    ("scopeLogs", "scope_logs"),
    ("logRecords", "log_records"),
)


class OTLPFormatError(ValueError):
    """The body of an OTLP export request cannot be parsed."""


class OTLPTooManyItems(ValueError):
    """An export request holds more spans or log records (or resource and scope entries)
    than allowed."""

    def __init__(self, limit: int, what: str = "spans", items: str = "spans") -> None:
        super().__init__(
            f"export of more than {limit} {what} exceeds the limit of {limit} {items} per "
            "request; send smaller batches (OpenTelemetry Collector: send_batch_max_size)"
        )


# --------------------------------------------------------------------------------------------
# Parsing and answering export requests


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_export_request(
    body: bytes, content_type: str, max_items: int | None = None, signal: Signal = TRACES
) -> Any:
    """Decode an OTLP/HTTP export body (`signal`: TRACES or LOGS), binary protobuf or OTLP/JSON.

    With `max_items`, raises `OTLPTooManyItems` for a larger batch before parsing it.
    """
    media_type = _media_type(content_type)
    if body.startswith(_GZIP_MAGIC):
        raise OTLPFormatError(
            "OTLP body is gzip-compressed; decompress it (Content-Encoding) before parsing"
        )
    if media_type in _PROTOBUF_TYPES:
        if max_items is not None:
            count_protobuf_items(body, max_items, signal.items)
        return _parse_protobuf(body, signal)
    if media_type in _JSON_TYPES:
        return _parse_json(body, max_items, signal)
    raise OTLPFormatError(
        f"unsupported OTLP content type {content_type!r}; "
        f"expected {PROTOBUF_CONTENT_TYPE!r} or {JSON_CONTENT_TYPE!r}"
    )


def _parse_protobuf(body: bytes, signal: Signal) -> Any:
    request = signal.request()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, TypeError) as exc:
        raise OTLPFormatError(f"invalid OTLP protobuf body: {exc}") from exc
    return request


def _varint(body: bytes, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise OTLPFormatError("invalid OTLP protobuf body: truncated or malformed varint")
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _messages(body: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    """Where the length-delimited fields numbered `number` are in `body[start:end]`, read from
    tags and lengths only (lazily: nothing past what the caller asks for); other fields are
    skipped unread."""
    at = start
    while at < end:
        tag, at = _varint(body, at, end)
        wire_type = tag & 7
        if wire_type == 0:
            _, at = _varint(body, at, end)
        elif wire_type == 1 or wire_type == 5:
            at += 8 if wire_type == 1 else 4
        elif wire_type == 2:
            length, at = _varint(body, at, end)
            if at + length > end:
                raise OTLPFormatError("invalid OTLP protobuf body: a field runs past its message")
            if tag >> 3 == number:
                yield at, at + length
            at += length
        else:
            raise OTLPFormatError(f"invalid OTLP protobuf body: wire type {wire_type}")
        if at > end:
            raise OTLPFormatError("invalid OTLP protobuf body: a field runs past its message")


def count_protobuf_items(body: bytes, limit: int, items: str = "spans") -> int:
    """The spans (log records) of a binary export request, counted from the wire without
    parsing it; raises `OTLPTooManyItems` as soon as there are more than `limit` (or more
    resource and scope entries than that: each costs as much to walk as an item)."""
    count = entries = 0
    for start, end in _messages(body, 0, len(body), _RESOURCES):
        for scope_start, scope_end in _messages(body, start, end, _SCOPES):
            for _ in _messages(body, scope_start, scope_end, _ITEMS):
                count += 1
                if count > limit:
                    raise OTLPTooManyItems(limit, items, items)
            entries += 1
            if entries > limit:
                raise OTLPTooManyItems(limit, "resource and scope entries", items)
        entries += 1
    return count


def count_json_items(document: dict[str, Any], limit: int, signal: Signal = TRACES) -> int:
    """The spans (log records) of an OTLP/JSON document, counted before protobuf's JSON
    mapping runs."""
    count = entries = 0
    for resource in as_dicts(_field(document, *signal.resources)):
        for scope in as_dicts(_field(resource, *signal.scopes)):
            found = _field(scope, *signal.entries)
            count += len(found) if isinstance(found, list) else 0
            if count > limit:
                raise OTLPTooManyItems(limit, signal.items, signal.items)
            entries += 1
            if entries > limit:
                raise OTLPTooManyItems(limit, "resource and scope entries", signal.items)
        entries += 1
    return count


def _parse_json(body: bytes, max_items: int | None, signal: Signal) -> Any:
    depth = scan(body, OTLP_JSON_MAX_DEPTH + 1, keep_commas=0).max_depth
    if depth > OTLP_JSON_MAX_DEPTH:
        raise OTLPFormatError(
            f"invalid OTLP/JSON body: nested {depth} levels deep, deeper than any OTLP message "
            f"({OTLP_JSON_MAX_DEPTH})"
        )
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OTLPFormatError(f"invalid OTLP/JSON body: {exc}") from exc
    if not isinstance(document, dict):
        raise OTLPFormatError(
            f"invalid OTLP/JSON body: expected an object, got {type(document).__name__}"
        )
    if max_items is not None:
        count_json_items(document, max_items, signal)
    problem = _shape_problem(document, signal.request.DESCRIPTOR, "")
    if problem is not None:
        raise OTLPFormatError(f"invalid OTLP/JSON body: {problem}")
    _hex_ids_to_base64(document, signal)
    request = signal.request()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise OTLPFormatError(f"invalid OTLP/JSON body: {exc}") from exc
    return request


def _shape_problem(value: dict[str, Any], descriptor: Any, path: str) -> str | None:
    """Where a message field of `value` holds something other than an object (or a repeated
    one something other than an array of objects): protobuf's JSON mapping, told to ignore
    unknown fields as OTLP asks, would otherwise read a string as an empty message."""
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None or field.message_type is None or item is None:
            continue  # unknown fields are ignored; scalars are checked by protobuf itself
        where = f"{path}.{key}" if path else key
        if field.is_repeated and not isinstance(item, list):
            return f"{where} must be an array"
        for index, element in enumerate(item if field.is_repeated else [item]):
            at = f"{where}[{index}]" if field.is_repeated else where
            if not isinstance(element, dict):
                return f"{at} must be an object, not {type(element).__name__}"
            problem = _shape_problem(element, field.message_type, at)
            if problem is not None:
                return problem
    return None


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    return obj[camel] if camel in obj else obj.get(snake)


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(document: dict[str, Any], signal: Signal) -> None:
    """OTLP/JSON carries trace and span ids as hex; protobuf's JSON mapping wants base64."""
    for resource in as_dicts(_field(document, *signal.resources)):
        for scope in as_dicts(_field(resource, *signal.scopes)):
            for item in as_dicts(_field(scope, *signal.entries)):
                _convert_ids(item)
                for link in as_dicts(item.get("links")):
                    _convert_ids(link)


_ID_BYTES = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def _convert_ids(obj: dict[str, Any]) -> None:
    for key, size in _ID_BYTES.items():
        value = obj.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise OTLPFormatError(f"invalid OTLP/JSON body: {key} must be a hex string")
        if len(value) == 2 * size and _HEX.match(value):
            obj[key] = base64.b64encode(binascii.unhexlify(value)).decode("ascii")
            continue
        # Tolerate clients that use protobuf's own JSON mapping (base64): a base64 id of 8 or 16
        # bytes always ends in '=', so it can never be mistaken for hex.
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != size:
            raise OTLPFormatError(
                f"invalid OTLP/JSON body: {key} {value!r} is not {2 * size} hex characters"
            )


def export_response(
    content_type: str, rejected: int = 0, error_message: str = "", signal: Signal = TRACES
) -> tuple[bytes, str]:
    """An export response, encoded like the request it answers: full success, or a partial
    success naming how many spans (log records) were rejected and why (OTLP exporters do not
    retry those)."""
    response = signal.response()
    if rejected:
        partial = signal.partial_success(error_message=error_message)
        setattr(partial, signal.rejected_field, rejected)
        response.partial_success.CopyFrom(partial)
    if _media_type(content_type) in _JSON_TYPES:
        return json_format.MessageToJson(response).encode(), JSON_CONTENT_TYPE
    return response.SerializeToString(), PROTOBUF_CONTENT_TYPE


# --------------------------------------------------------------------------------------------
# OTLP values


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value (None when unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    """OTLP key-values (span, event or resource attributes) as a plain dict."""
    return {kv.key: any_value(kv.value) for kv in key_values}
