"""Schemathesis over the ingester's own OpenAPI document, in-process (ASGI, no network), with
the service wired as `register` wires it on FastStream's test broker.

Every operation, 100 examples each by default; `LOOPLINE_FUZZ_EXAMPLES=1000` for the long form.
Zero server errors, every answer as the document declares it (status, content type, schema),
schema-valid records accepted and schema-violating OTLP refused, as schemathesis' default
checks ask, and every record a 200 calls newly accepted is on a topic, under its id.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from tests.fuzz.ingester.wiring import wire_ingester

EXAMPLES = int(os.environ.get("LOOPLINE_FUZZ_EXAMPLES", "100"))

# Schemathesis' statuses for refused schema-violating data, and 413: how this API refuses too
# much data (a body, a batch, a record over a limit).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
)
WIRED = wire_ingester()
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", WIRED.asgi_with_test_broker(), config=CONFIG
)


@schemathesis.serializer("application/x-protobuf")
def protobuf(ctx: Any, value: Any) -> dict[str, Any]:
    """OTLP protobuf bodies are bytes as they are (the schema says `format: binary`)."""
    if isinstance(value, bytes):
        return {"data": value}
    data = getattr(value, "data", None)
    return {"data": data if isinstance(data, bytes) else str(value).encode("utf-8", "replace")}


ANSWERS: Counter[tuple[str, int]] = Counter()  # (operation, status) -> how many


@pytest.fixture(scope="module", autouse=True)
def stop_the_app() -> Iterator[None]:
    """Stop the app's lifespan (and with it the test broker) when the module is done; print
    what was sent and answered (`pytest -s` shows it)."""
    yield
    asgi.shutdown_lifespans()
    for (operation, status), count in sorted(ANSWERS.items()):
        print(f"fuzz: {operation} -> {status}: {count}")
    published = sum(len(keys) for keys in WIRED.published.values())
    print(f"fuzz: {sum(ANSWERS.values())} requests, {published} records published")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    response = case.call()
    ANSWERS[(f"{case.method} {case.path}", response.status_code)] += 1
    excluded = []
    # What the document leaves to other specifications or to limits, so schema-valid data may
    # still be refused: the OTLP message itself (the document names its outer structure and
    # points to the OTLP specification), and the size limits (bytes, spans in all).
    if case.path in ("/v1/traces", "/v1/logs") or response.status_code == 413:
        excluded.append(checks.positive_data_acceptance)
    # Records are validated as pydantic does by default (lax): a value the schema's type can be
    # read from (`false` or "0" for an integer) is taken, so schema-violating data may pass.
    if case.path == "/v1/records":
        excluded.append(checks.negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)
    assert response.status_code < 500, response.text
    if case.path == "/v1/records" and response.status_code == 200:
        answer = response.json()
        new = set(answer["accepted"]) - set(answer["duplicates"])
        assert new <= WIRED.published_ids(), new - WIRED.published_ids()
