"""Log lines a process writes: plain text or JSON, each line about a record naming it.

A line logged while a record's span is current (`shared.telemetry.record_span`: every stage
handles a record inside one) carries that record's `record_id`, `flow` and `trace_id`, so the
lines of one record can be found by its id or next to its trace. Secrets are `SecretStr` in the
settings and print masked; as a second guard, the values of the process's secrets are replaced
by `**********` in every line (`SecretMask`), whatever logged them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from shared.telemetry import FLOW, RECORD_ID

LogFormat = Literal["text", "json"]
MASK = "**********"
_OURS = "loopline_handler"  # marks the handler `configure_logging` installed
_CONTEXT = ("record_id", "flow", "trace_id", "span_id")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(about)s"
_JSON_FIELDS = ("asctime", "levelname", "name", "message")


class RecordContext(logging.Filter):
    """Adds the current span's record id, flow and trace id to each log record (None when no
    span is current; `about` is the same for text lines: empty, or ` [record=... ...]`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span()
        context = span.get_span_context()
        attributes = getattr(span, "attributes", None) or {}
        found = {
            "record_id": attributes.get(RECORD_ID),
            "flow": attributes.get(FLOW),
            "trace_id": format(context.trace_id, "032x") if context.is_valid else None,
            "span_id": format(context.span_id, "016x") if context.is_valid else None,
        }
        for name in _CONTEXT:
            if not hasattr(record, name):  # what the caller passed in `extra` wins
                setattr(record, name, found[name])
        shown = [
            f"{label}={getattr(record, name)}"
            for label, name in (("record", "record_id"), ("flow", "flow"), ("trace", "trace_id"))
            if getattr(record, name, None)
        ]
        record.about = f" [{' '.join(shown)}]" if shown else ""
        return True


class SecretMask(logging.Filter):
    """Replaces the given secret values wherever they appear in a line (message and args)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._mask(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self._mask(record.exc_text)
                record.exc_info = None  # formatters show the masked text, not a fresh one
        return True


class _JsonLines(JsonFormatter):
    """One JSON object per line: time, level, logger, message, and the record's context
    when there is one (no null fields)."""

    def process_log_record(self, log_data: dict[str, object]) -> dict[str, object]:
        return {
            key: value
            for key, value in log_data.items()
            if value is not None and key != "about"  # the text form of the context
        }


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return _JsonLines(
            [*_JSON_FIELDS, *_CONTEXT],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(_TEXT)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the `sys.stderr` of the moment (a test runner may swap it), as logging's
    last-resort handler does."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        del value


def configure_logging(
    level: str,
    log_format: LogFormat = "text",
    secrets: Iterable[str] = (),
    force: bool = False,
) -> logging.Handler | None:
    """Log to stderr at `level` in `log_format`, every line with its record's context and
    with `secrets` masked; the handler set up. Like `logging.basicConfig`, it leaves logging
    alone when something else configured it already (a test runner, an app that embeds a
    command; None then), unless `force` (a process's own entry point, `loopline run`)."""
    root = logging.getLogger()
    if not force and any(not getattr(handler, _OURS, False) for handler in root.handlers):
        return None
    handler = _Stderr()
    setattr(handler, _OURS, True)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RecordContext())
    handler.addFilter(SecretMask(secrets))
    for old in list(root.handlers):  # ours from an earlier call, or any when forced
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return handler
