"""Idempotency-Key: a request retried under the same key is answered once, by replaying.

Answers are remembered for a window and within a bound in bytes (one answer can list a thousand
record ids). Requests with the same key run one at a time: a second request arriving while the
first is still ingesting waits for it, then replays its answer (or, if the first failed, runs
itself). A key reused for a different body is refused (422), as the IETF draft on the header
says, rather than answered with another request's result.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["Reply", "ReplyCache"]

# What an entry costs besides its bytes (the objects that hold it), so tiny answers count too.
ENTRY_OVERHEAD_BYTES = 200


@dataclass(frozen=True)
class Reply:
    fingerprint: str  # of the request body the answer was for
    status: int
    content: bytes
    stored_at: float

    def size(self, key: str) -> int:
        return len(self.content) + len(key) + len(self.fingerprint) + ENTRY_OVERHEAD_BYTES


class ReplyCache:
    """Answers by key for `window_s` seconds, at most `max_bytes` in all (oldest out first)."""

    def __init__(
        self,
        window_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.clock = clock
        self.size_bytes = 0
        self._replies: OrderedDict[str, Reply] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._replies)

    def _drop(self, key: str) -> None:
        reply = self._replies.pop(key)
        self.size_bytes -= reply.size(key)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._replies:
            key, reply = next(iter(self._replies.items()))
            if reply.stored_at > horizon and self.size_bytes <= self.max_bytes:
                break
            self._drop(key)

    def get(self, key: str) -> Reply | None:
        self._expire(self.clock())
        return self._replies.get(key)

    def add(self, key: str, fingerprint: str, status: int, content: bytes) -> None:
        """Remember an answer; one larger than the whole bound is not kept."""
        now = self.clock()
        if key in self._replies:
            self._drop(key)
        reply = Reply(fingerprint, status, content, now)
        if reply.size(key) <= self.max_bytes:
            self._replies[key] = reply
            self.size_bytes += reply.size(key)
        self._expire(now)

    @asynccontextmanager
    async def claim(self, key: str) -> AsyncIterator[None]:
        """Hold `key` while a request runs under it: another request with it waits here."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
