"""Publishing the collector's events, with a memory of what this process already sent.

Webhooks and reconciliation see the same responses; consumers dedupe by record id and annotator
anyway, but the collector keeps the topics tidy by not re-sending, within its own lifetime,
an event it already sent (a bounded memory: after a restart some duplicates are expected).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from shared.events import (
    FEEDBACK_RESPONSES,
    RECORDS_COMPLETED,
    AnnotatorResponse,
    CompletedRecord,
)

log = logging.getLogger("loopline.feedback_collector")

# (topic, key, value) -> awaited until the broker acknowledged the message.
Send = Callable[[str, bytes, bytes], Awaitable[None]]


def response_key(event: AnnotatorResponse) -> Hashable:
    return (
        "response",
        event.dataset,
        event.record_id,
        event.annotator,
        event.status.value,
        event.responded_at.isoformat(),
    )


def completed_key(event: CompletedRecord) -> Hashable:
    answers = sorted(
        (r.annotator, r.status.value, r.responded_at.isoformat()) for r in event.responses
    )
    return ("completed", event.dataset, event.record_id, tuple(answers))


class Emitter:
    """Sends `AnnotatorResponse` and `CompletedRecord` events keyed by record id."""

    def __init__(self, send: Send, memory: int = 100_000) -> None:
        self._send = send
        self._sent: OrderedDict[Hashable, None] = OrderedDict()
        self._memory = memory
        self.responses_sent = 0
        self.completed_sent = 0

    def _seen(self, key: Hashable) -> bool:
        if key in self._sent:
            self._sent.move_to_end(key)
            return True
        return False

    def _remember(self, key: Hashable) -> None:
        self._sent[key] = None
        while len(self._sent) > self._memory:
            self._sent.popitem(last=False)

    async def response(self, event: AnnotatorResponse) -> bool:
        """Send one response (unless sent before); True when it was sent."""
        key = response_key(event)
        if self._seen(key):
            return False
        await self._send(FEEDBACK_RESPONSES, event.record_id.encode(), event.to_bytes())
        self._remember(key)
        self.responses_sent += 1
        log.debug(
            "response: %s %s %s in %s",
            event.annotator,
            event.status.value,
            event.record_id,
            event.dataset,
        )
        return True

    async def completed(self, event: CompletedRecord) -> bool:
        """Send one completed record (unless sent with the same responses); True when sent."""
        key = completed_key(event)
        if self._seen(key):
            return False
        await self._send(RECORDS_COMPLETED, event.record_id.encode(), event.to_bytes())
        self._remember(key)
        self.completed_sent += 1
        log.debug(
            "completed: %s in %s with %d response(s)",
            event.record_id,
            event.dataset,
            len(event.responses),
        )
        return True
