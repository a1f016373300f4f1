"""Transient or permanent: the one place that decides what a consumer does with a failure.

* **Transient**: retrying later can succeed; the trouble is around the record, not in it (the
  broker, Argilla busy or down, the disk full or read-only, a database lock, the LLM endpoint
  down or slow). The consumer backs off and retries without committing, for as long as it
  lasts, and says why on its health endpoint. Nothing is dead-lettered.
* **Permanent**: this record is bad and no retry can fix it (it does not parse or validate, a
  template refuses it, it is too large for the broker). Only that record goes to the dead-letter
  topic, with its reason; the others go on.
* Anything else is unexpected (a bug): retried a bounded number of times, then dead-lettered
  like a permanent failure, so one record cannot stop its partition; `loopline dlq replay` brings
  it back once the bug is fixed.

Services raise `TransientError` or `PermanentError` (with the cause chained) when they know
better than the exception's type, e.g. an HTTP status from Argilla.
"""

from __future__ import annotations

import json
import sqlite3
from enum import StrEnum

import httpx
from aiokafka import errors as kafka_errors
from pydantic import ValidationError

from shared.events import NewerSchemaError
from shared.llm.base import LLMError


class TransientError(Exception):
    """Retrying later can succeed: back off and retry, never dead-letter."""


class PermanentError(Exception):
    """Retrying cannot help: the record goes to the dead-letter topic at once."""


class Failure(StrEnum):
    transient = "transient"
    permanent = "permanent"
    unexpected = "unexpected"


# Kafka errors that are about this record, not the broker's state.
_RECORD_KAFKA_ERRORS = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.UnsupportedCodecError,
)


def _transient_status(status: int) -> bool:
    return status == 429 or status == 408 or status >= 500


def classify(exc: BaseException) -> Failure:
    """Whether `exc` is transient, permanent (the record is bad) or unexpected."""
    if isinstance(exc, TransientError | NewerSchemaError):
        return Failure.transient  # NewerSchemaError: this service is due for an upgrade
    if isinstance(
        exc, PermanentError | ValidationError | json.JSONDecodeError | UnicodeDecodeError
    ):
        return Failure.permanent
    if isinstance(exc, LLMError):
        return Failure.transient if exc.retryable else Failure.permanent
    if isinstance(exc, _RECORD_KAFKA_ERRORS):
        return Failure.permanent
    if isinstance(exc, kafka_errors.KafkaError):
        return Failure.transient  # the broker's state: leaders, timeouts, connections
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return Failure.transient if _transient_status(status) else Failure.unexpected
    if isinstance(exc, httpx.TransportError):
        return Failure.transient  # connection refused or reset, timeouts
    if isinstance(exc, OSError | sqlite3.OperationalError):
        return Failure.transient  # disk full or read-only, connections, database locks
    return Failure.unexpected


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == Failure.transient


def is_permanent(exc: BaseException) -> bool:
    return classify(exc) == Failure.permanent
