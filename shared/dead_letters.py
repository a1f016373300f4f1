"""Retries by kind of failure, then the dead-letter topic (`shared.failures` decides the kind).

A transient failure is retried in place with exponential backoff for as long as it lasts (the
consumer does not move on or commit; `waiting_on` says why, for the health endpoint). A
permanent one sends the record's original bytes to `<topic>.dlq` at once, with headers that
say why; an unexpected one does so after `RetrySettings.max_attempts`. The consumer then moves
on. Only if the dead letter itself cannot be written does the error escape, so the offset is not
committed and the message is consumed again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from faststream import BaseMiddleware
from faststream.exceptions import HandlerException
from faststream.kafka import KafkaBroker

from shared.events import dead_letter_topic
from shared.failures import Failure, PermanentError, TransientError, classify, is_permanent
from shared.settings import KafkaSettings, RetrySettings

__all__ = [
    "DeadLetter",
    "DeadLetters",
    "LastError",
    "PermanentError",
    "TransientError",
    "backoff_delay",
    "is_permanent",
]

T = TypeVar("T")
log = logging.getLogger("loopline.dead_letters")

# Header names of a dead letter. Values are UTF-8 strings.
H_ERROR = "loopline-error"
H_ERROR_TYPE = "loopline-error-type"
H_SERVICE = "loopline-service"
H_ATTEMPTS = "loopline-attempts"
H_TOPIC = "loopline-source-topic"
H_PARTITION = "loopline-source-partition"
H_OFFSET = "loopline-source-offset"
# "false" on a dead letter whose body is a reference to what could not be sent, not the message
# itself (the feedback collector's oversized events): `loopline dlq replay` leaves it alone.
H_REPLAYABLE = "loopline-replayable"
MAX_ERROR_CHARS = 2000


def backoff_delay(settings: RetrySettings, attempt: int, jitter: float = 0.1) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), with a little jitter."""
    exponent = min(attempt - 1, 64)  # transient failures are retried without end
    base = settings.backoff_initial_s * settings.backoff_multiplier**exponent
    capped = min(settings.backoff_max_s, base)
    return capped * (1 + random.uniform(-jitter, jitter))


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as read back from a `.dlq` topic."""

    body: bytes
    error: str
    error_type: str
    service: str
    attempts: int
    source_topic: str
    source_partition: int | None
    source_offset: int | None

    @classmethod
    def from_headers(cls, body: bytes, headers: dict[str, str]) -> DeadLetter:
        def opt_int(name: str) -> int | None:
            value = headers.get(name)
            return int(value) if value not in (None, "") else None

        return cls(
            body=body,
            error=headers[H_ERROR],
            error_type=headers[H_ERROR_TYPE],
            service=headers[H_SERVICE],
            attempts=int(headers[H_ATTEMPTS]),
            source_topic=headers[H_TOPIC],
            source_partition=opt_int(H_PARTITION),
            source_offset=opt_int(H_OFFSET),
        )


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class LastError:
    """A service's latest failure: when (UTC), what it was doing, the error and its kind."""

    at: datetime
    error: str
    kind: str  # transient, permanent or unexpected (`shared.failures.Failure`)

    @classmethod
    def of(cls, what: str, exc: BaseException, failure: Failure) -> LastError:
        error = f"{what}: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        return cls(at=datetime.now(UTC), error=error, kind=failure.value)

    def as_json(self) -> dict[str, str]:
        return {"at": self.at.isoformat(), "error": self.error, "kind": self.kind}


class DeadLetters:
    """The retry policy of one service, and its broker middleware factory (every subscriber)."""

    def __init__(
        self,
        service: str,
        retry: RetrySettings,
        sleep: Sleep = asyncio.sleep,
        kafka: KafkaSettings | None = None,
    ) -> None:
        self.service = service
        self.retry = retry
        self.sleep = sleep
        # Whose dead-letter topics records go to (`kafka.topic`); none: the names as they are.
        self.kafka = kafka if kafka is not None else KafkaSettings()
        self._broker: KafkaBroker | None = None
        self._waiting: dict[int, tuple[float, str]] = {}  # retry loop -> (since, why)
        self._loops = itertools.count()
        # The latest failure of any attempt (retried or not), for the health endpoint.
        self.last_error: LastError | None = None

    def bind(self, broker: KafkaBroker) -> None:
        self._broker = broker

    def __call__(self, msg: Any, /, *, context: Any) -> _RetryThenDeadLetter:
        return _RetryThenDeadLetter(msg, context=context, owner=self)

    @property
    def waiting_on(self) -> str | None:
        """Why the service is not moving on (the oldest transient failure being retried)."""
        if not self._waiting:
            return None
        since, why = min(self._waiting.values())
        return f"{why} (retrying for {time.monotonic() - since:.0f} s)"

    async def with_retries(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """`operation`'s result, retried by kind of failure: transient ones for as long as they
        last, unexpected ones up to `max_attempts`; the error of the last attempt is raised
        (at once for a permanent one), with `attempts` set on it."""
        attempt = 0
        token = next(self._loops)
        try:
            while True:
                attempt += 1
                try:
                    return await operation()
                except HandlerException:
                    raise  # FastStream's own ack/nack/reject control flow
                except Exception as exc:
                    failure = classify(exc)
                    self.last_error = LastError.of(what, exc, failure)
                    if failure == Failure.permanent or (
                        failure == Failure.unexpected and attempt >= self.retry.max_attempts
                    ):
                        exc.attempts = attempt  # type: ignore[attr-defined]
                        raise
                    delay = backoff_delay(self.retry, attempt)
                    reason = f"{what}: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
                    if failure == Failure.transient:
                        since = self._waiting.get(token, (time.monotonic(), ""))[0]
                        self._waiting[token] = (since, reason)
                    log.warning(
                        "%s failure (attempt %d%s), retrying in %.2fs: %s",
                        failure.value,
                        attempt,
                        "" if failure == Failure.transient else f"/{self.retry.max_attempts}",
                        delay,
                        reason,
                    )
                    await self.sleep(delay)
        finally:
            self._waiting.pop(token, None)

    async def run(
        self, records: Sequence[Any], operation: Callable[[], Awaitable[Any]], what: str
    ) -> bool:
        """`operation` under `with_retries`; when it fails for good, `records` (the consumed Kafka
        records it was about) go to the dead-letter topic. True when it succeeded."""
        try:
            await self.with_retries(operation, what)
        except HandlerException:
            raise
        except Exception as exc:
            attempts = int(getattr(exc, "attempts", 1))
            for record in records:
                await self.send_record(record, exc, attempts)
            return False
        return True

    async def send_record(self, record: Any, exc: BaseException, attempts: int) -> None:
        """Publish the original bytes of one consumed record to its topic's DLQ with the reason.

        The record's topic is the one on the cluster (the flow set's, behind its prefix); its
        dead-letter topic is the set's of its logical name. The header keeps the topic as on the
        cluster, for `loopline dlq replay`."""
        if self._broker is None:
            raise RuntimeError("DeadLetters used before bind(broker)")
        topic = str(getattr(record, "topic", "") or "unknown")
        partition = getattr(record, "partition", None)
        offset = getattr(record, "offset", None)
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        headers = {
            H_ERROR: error,
            H_ERROR_TYPE: type(exc).__name__,
            H_SERVICE: self.service,
            H_ATTEMPTS: str(attempts),
            H_TOPIC: topic,
            H_PARTITION: "" if partition is None else str(partition),
            H_OFFSET: "" if offset is None else str(offset),
        }
        await self._broker.publish(
            record.value or b"",
            topic=self.kafka.topic(dead_letter_topic(self.kafka.logical_topic(topic))),
            key=getattr(record, "key", None),
            headers=headers,
        )
        log.error(
            "dead-lettered message from %s[%s]@%s after %d attempt(s): %s",
            topic,
            partition,
            offset,
            attempts,
            error,
        )


class _RetryThenDeadLetter(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, owner: DeadLetters) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = msg.raw_message
        records = list(raw) if isinstance(raw, list | tuple) else [raw]
        topic = str(getattr(records[0], "topic", "") or "a topic") if records else "a topic"
        # A batch handler dead-letters its bad records itself (`run` per record); what it
        # raises fails the whole batch.
        await self.owner.run(records, lambda: call_next(msg), f"handling {topic}")
        return None
