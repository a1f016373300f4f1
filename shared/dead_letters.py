"""Bounded retries with backoff, then the dead-letter topic.

A handler that raises is retried in place with exponential backoff. An error that no retry can
fix (a message that does not parse or validate, or a `PermanentError`) skips the retries. When
the attempts run out the original bytes go to `<topic>.dlq`, with headers that say why, and the
consumer moves on. Only if the dead letter itself cannot be written does the error escape, so the
offset is not committed and the message is consumed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream import BaseMiddleware
from faststream.exceptions import HandlerException
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared.events import dead_letter_topic
from shared.settings import RetrySettings

log = logging.getLogger("loopline.dead_letters")

# Header names of a dead letter. Values are UTF-8 strings.
H_ERROR = "loopline-error"
H_ERROR_TYPE = "loopline-error-type"
H_SERVICE = "loopline-service"
H_ATTEMPTS = "loopline-attempts"
H_TOPIC = "loopline-source-topic"
H_PARTITION = "loopline-source-partition"
H_OFFSET = "loopline-source-offset"
MAX_ERROR_CHARS = 2000


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the message goes to the DLQ at once."""


def is_permanent(exc: BaseException) -> bool:
    return isinstance(
        exc, PermanentError | ValidationError | json.JSONDecodeError | UnicodeDecodeError
    )


def backoff_delay(settings: RetrySettings, attempt: int, jitter: float = 0.1) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), with a little jitter."""
    base = settings.backoff_initial_s * settings.backoff_multiplier ** (attempt - 1)
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


class DeadLetters:
    """The broker middleware factory: retries, then dead letters, for every subscriber."""

    def __init__(self, service: str, retry: RetrySettings, sleep: Sleep = asyncio.sleep) -> None:
        self.service = service
        self.retry = retry
        self.sleep = sleep
        self._broker: KafkaBroker | None = None

    def bind(self, broker: KafkaBroker) -> None:
        self._broker = broker

    def __call__(self, msg: Any, /, *, context: Any) -> _RetryThenDeadLetter:
        return _RetryThenDeadLetter(msg, context=context, owner=self)

    async def send(self, message: Any, exc: BaseException, attempts: int) -> None:
        """Dead-letter every Kafka record of `message` (one, or all of a batch)."""
        raw = message.raw_message
        for record in raw if isinstance(raw, list | tuple) else [raw]:
            await self.send_record(record, exc, attempts)

    async def send_record(self, record: Any, exc: BaseException, attempts: int) -> None:
        """Publish the original bytes of one consumed record to its topic's DLQ with the reason."""
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
            topic=dead_letter_topic(topic),
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
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call_next(msg)
            except HandlerException:
                raise  # FastStream's own ack/nack/reject control flow
            except Exception as exc:
                if is_permanent(exc) or attempt >= self.owner.retry.max_attempts:
                    await self.owner.send(msg, exc, attempt)
                    return None
                delay = backoff_delay(self.owner.retry, attempt)
                log.warning(
                    "handler failed (attempt %d/%d), retrying in %.2fs: %s: %s",
                    attempt,
                    self.owner.retry.max_attempts,
                    delay,
                    type(exc).__name__,
                    exc,
                )
                await self.owner.sleep(delay)
