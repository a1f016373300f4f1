"""Async rate limiting: token buckets and per-endpoint limiters shared by a process's clients.

A `TokenBucket` holds up to `capacity` tokens and refills continuously at `refill_per_s`.
`acquire(amount)` waits (sleeping, never spinning) until enough tokens are there. Waiters are
served first come, first served. A request for more than the capacity proceeds as soon as the
bucket is full and drives the balance negative, so the long-run rate still holds without a
deadlock.

`shared_semaphore` and `shared_bucket` hand out one limiter per key and event loop. Every caller
that asks for the same key in the same loop shares it; the first caller's arguments decide its
size. An entry lives as long as someone holds it, so the registry does not grow with the number
of endpoints ever used.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Tolerate float rounding so a waiter that slept exactly long enough does not sleep again.
_EPSILON = 1e-9


class TokenBucket:
    """A token bucket for async callers. All amounts are floats, so partial tokens refill too."""

    def __init__(
        self,
        capacity: float,
        refill_per_s: float,
        *,
        initial: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if refill_per_s <= 0:
            raise ValueError(f"refill_per_s must be positive, got {refill_per_s}")
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity if initial is None else min(float(initial), self.capacity)
        self._updated = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def per_minute(
        cls, amount: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> TokenBucket:
        """`amount` per minute: the bucket holds a minute's worth and starts full."""
        return cls(amount, amount / 60.0, clock=clock, sleep=sleep)

    @property
    def available(self) -> float:
        """The tokens in the bucket now (negative after an oversized request or a debit)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_s)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Take `amount` tokens, waiting until there are enough; returns the seconds waited."""
        if amount < 0:
            raise ValueError(f"cannot acquire a negative amount ({amount})")
        needed = min(float(amount), self.capacity)
        waited = 0.0
        async with self._lock:
            while True:
                self._refill()
                if self._tokens + _EPSILON >= needed:
                    self._tokens -= amount
                    return waited
                wait = (needed - self._tokens) / self.refill_per_s
                await self._sleep(wait)
                waited += wait

    def debit(self, amount: float) -> None:
        """Take `amount` more tokens without waiting (e.g. usage above the estimate)."""
        if amount < 0:
            raise ValueError(f"cannot debit a negative amount ({amount})")
        self._refill()
        self._tokens -= amount

    def credit(self, amount: float) -> None:
        """Give back `amount` tokens (e.g. usage below the estimate); never above capacity."""
        if amount < 0:
            raise ValueError(f"cannot credit a negative amount ({amount})")
        self._refill()
        self._tokens = min(self.capacity, self._tokens + amount)


@dataclass(eq=False)
class InFlightLimit:
    """At most `size` holders at a time; `async with limit:` takes a slot."""

    size: int
    semaphore: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        self.semaphore = asyncio.Semaphore(self.size)

    async def __aenter__(self) -> None:
        await self.semaphore.acquire()

    async def __aexit__(self, *_: object) -> None:
        self.semaphore.release()


_Registry = weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, "weakref.WeakValueDictionary[Hashable, object]"
]
_SEMAPHORES: _Registry = weakref.WeakKeyDictionary()
_BUCKETS: _Registry = weakref.WeakKeyDictionary()


def _entries(registry: _Registry) -> weakref.WeakValueDictionary[Hashable, object]:
    # asyncio primitives belong to one loop, so each running loop gets its own limiters.
    loop = asyncio.get_running_loop()
    entries = registry.get(loop)
    if entries is None:
        entries = weakref.WeakValueDictionary()
        registry[loop] = entries
    return entries


def shared_semaphore(key: Hashable, size: int) -> InFlightLimit:
    """The in-flight limit for `key` in the running loop; created with `size` if new."""
    entries = _entries(_SEMAPHORES)
    limit = entries.get(key)
    if not isinstance(limit, InFlightLimit):
        limit = InFlightLimit(size)
        entries[key] = limit
    return limit


def shared_bucket(
    key: Hashable,
    per_minute: float,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> TokenBucket:
    """The per-minute bucket for `key` in the running loop; created with these arguments if new."""
    entries = _entries(_BUCKETS)
    bucket = entries.get(key)
    if not isinstance(bucket, TokenBucket):
        bucket = TokenBucket.per_minute(per_minute, clock=clock, sleep=sleep)
        entries[key] = bucket
    return bucket
