"""OTLP/HTTP trace export requests on the wire: content types, decoding, ids, the response.

An OTLP exporter POSTs an `ExportTraceServiceRequest` as binary protobuf or as OTLP/JSON; this
module decodes either (`parse_export_request`), answers it (`export_response`) and turns OTLP
attribute values into plain Python values (`attributes`). What the spans mean (the GenAI
semantic conventions) is `services.ingester.otlp.genai`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = [
    "OTLPFormatError",
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


class OTLPFormatError(ValueError):
    """The body of an OTLP export request cannot be parsed."""


# --------------------------------------------------------------------------------------------
# Parsing and answering export requests


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_export_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Decode an OTLP/HTTP trace export body, binary protobuf or OTLP/JSON."""
    media_type = _media_type(content_type)
    if body.startswith(_GZIP_MAGIC):
        raise OTLPFormatError(
            "OTLP body is gzip-compressed; decompress it (Content-Encoding) before parsing"
        )
    if media_type in _PROTOBUF_TYPES:
        return _parse_protobuf(body)
    if media_type in _JSON_TYPES:
        return _parse_json(body)
    raise OTLPFormatError(
        f"unsupported OTLP content type {content_type!r}; "
        f"expected {PROTOBUF_CONTENT_TYPE!r} or {JSON_CONTENT_TYPE!r}"
    )


def _parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, TypeError) as exc:
        raise OTLPFormatError(f"invalid OTLP protobuf body: {exc}") from exc
    return request


def _parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OTLPFormatError(f"invalid OTLP/JSON body: {exc}") from exc
    if not isinstance(document, dict):
        raise OTLPFormatError(
            f"invalid OTLP/JSON body: expected an object, got {type(document).__name__}"
        )
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise OTLPFormatError(f"invalid OTLP/JSON body: {exc}") from exc
    return request


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    return obj[camel] if camel in obj else obj.get(snake)


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON carries trace and span ids as hex; protobuf's JSON mapping wants base64."""
    for resource_spans in as_dicts(_field(document, "resourceSpans", "resource_spans")):
        for scope_spans in as_dicts(_field(resource_spans, "scopeSpans", "scope_spans")):
            for span in as_dicts(scope_spans.get("spans")):
                _convert_ids(span)
                for link in as_dicts(span.get("links")):
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


def export_response(content_type: str) -> tuple[bytes, str]:
    """An empty (full success) export response, encoded like the request it answers."""
    response = ExportTraceServiceResponse()
    if _media_type(content_type) in _JSON_TYPES:
        return json_format.MessageToJson(response).encode(), JSON_CONTENT_TYPE
    return response.SerializeToString(), PROTOBUF_CONTENT_TYPE


# --------------------------------------------------------------------------------------------
# OTLP values


def _any_value(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value (None when unset)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    """OTLP key-values (span, event or resource attributes) as a plain dict."""
    return {kv.key: _any_value(kv.value) for kv in key_values}
