"""Log lines: a line about a record names it (record id, flow, trace id), as text or JSON, and
no line carries a secret of the process's settings, however it was logged."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from shared.logs import MASK, configure_logging
from shared.settings import (
    ApiKey,
    ArgillaSettings,
    ExportSettings,
    IngestSettings,
    KafkaSettings,
    Settings,
    secret_values,
)
from shared.telemetry import record_span, tracer_of
from tests.support.spans import kept_spans

log = logging.getLogger("loopline.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_json_lines_name_the_record_they_are_about(capsys: pytest.CaptureFixture[str]) -> None:
    with kept_spans() as (provider, _):
        configure_logging("INFO", "json", force=True)
        log.info("before any record")
        with record_span(tracer_of(provider), "judge", "rec-42", flow="default") as span:
            log.info("judged %s", "rec-42")
            trace_id = format(span.get_span_context().trace_id, "032x")
    outside, inside = (json.loads(line) for line in lines(capsys))
    assert outside["message"] == "before any record"
    assert {"record_id", "flow", "trace_id"}.isdisjoint(outside)
    assert inside["message"] == "judged rec-42"
    assert (inside["record_id"], inside["flow"], inside["trace_id"]) == (
        "rec-42",
        "default",
        trace_id,
    )
    assert inside["level"] == "INFO" and inside["logger"] == "loopline.test"


def test_text_lines_name_the_record_too(capsys: pytest.CaptureFixture[str]) -> None:
    with kept_spans() as (provider, _):
        configure_logging("INFO", "text", force=True)
        with record_span(tracer_of(provider), "judge", "rec-7", flow="default") as span:
            log.warning("slow endpoint")
            trace_id = format(span.get_span_context().trace_id, "032x")
    [line] = lines(capsys)
    assert line.endswith(f"slow endpoint [record=rec-7 flow=default trace={trace_id}]")


def test_no_line_carries_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        argilla=ArgillaSettings(api_key=SecretStr("argilla-key-0123")),
        kafka=KafkaSettings(sasl_password=SecretStr("sasl-pass-4567")),
        ingest=IngestSettings(api_keys=[ApiKey(name="bot", key=SecretStr("whsec-89ab"))]),
        export=ExportSettings(hf_token=SecretStr("hf_tokencdef")),
    )
    secrets = secret_values(settings)
    assert set(secrets) >= {"argilla-key-0123", "sasl-pass-4567", "whsec-89ab", "hf_tokencdef"}
    configure_logging("DEBUG", "json", secrets, force=True)
    log.debug("settings: %r", settings)  # SecretStr prints masked already
    log.info("calling with key %s", "argilla-key-0123")
    log.info("connecting with sasl-pass-4567 and hf_tokencdef")
    try:
        raise RuntimeError("webhook secret whsec-89ab refused")
    except RuntimeError:
        log.exception("registering the webhook failed")
    out = "\n".join(lines(capsys))
    for secret in secrets:
        assert secret not in out
    assert out.count(MASK) >= 4


def test_logging_someone_else_configured_is_left_alone() -> None:
    root = logging.getLogger()
    theirs = logging.NullHandler()
    root.addHandler(theirs)
    before = list(root.handlers)
    assert configure_logging("DEBUG", "json") is None
    assert root.handlers == before
