"""The ingester's OpenAPI document is complete and valid: every reference resolves, every POST
body is declared, and the document passes the OpenAPI 3.1 meta-schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import schemathesis

from services.ingester.api import create_app
from services.ingester.pipeline import IngestPipeline
from shared.events import Record
from shared.settings import IngestSettings
from tests.unit.ingester.http_app import FLOWS, RecordingPublisher, always_ready


def document() -> dict[str, Any]:
    pipeline = IngestPipeline(FLOWS, RecordingPublisher(), "default")
    return create_app(pipeline, IngestSettings(), always_ready).openapi()


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_reference_resolves() -> None:
    doc = document()
    found = set(refs(doc))
    assert "#/components/schemas/Record" in found
    for ref in found:
        assert resolve(doc, ref), ref


def test_records_body_is_a_record_or_a_batch_of_them() -> None:
    doc = document()
    body = doc["paths"]["/v1/records"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["oneOf"][0] == {"$ref": "#/components/schemas/Record"}
    assert schema["oneOf"][1]["items"] == {"$ref": "#/components/schemas/Record"}
    record = doc["components"]["schemas"]["Record"]
    assert set(record["properties"]) == set(Record.model_fields)
    assert "flow" not in record.get("required", [])  # the ingester's default flow applies
    example = body["content"]["application/json"]["example"]
    Record.model_validate(example)


def test_traces_body_declares_protobuf_and_json() -> None:
    doc = document()
    operation = doc["paths"]["/v1/traces"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/x-protobuf"]["schema"] == {"type": "string", "format": "binary"}
    otlp = resolve(doc, content["application/json"]["schema"]["$ref"])
    assert "resourceSpans" in otlp["properties"]
    assert {"200", "400", "413", "415"} <= set(operation["responses"])


def test_logs_body_declares_protobuf_and_json() -> None:
    doc = document()
    operation = doc["paths"]["/v1/logs"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/x-protobuf"]["schema"] == {"type": "string", "format": "binary"}
    otlp = resolve(doc, content["application/json"]["schema"]["$ref"])
    scopes = otlp["properties"]["resourceLogs"]["items"]["properties"]["scopeLogs"]
    assert "logRecords" in scopes["items"]["properties"]
    assert {"200", "400", "401", "403", "413", "415", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"bearer": []}, {}]
    assert "gen_ai.client.inference.operation.details" in operation["description"]


def test_the_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(document())
    schema.validate()
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert {("POST", "/v1/records"), ("POST", "/v1/traces"), ("POST", "/v1/logs")} <= operations
