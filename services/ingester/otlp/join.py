"""LLM spans and their GenAI log-record events, joined by (trace id, span id) within a wait.

A span and its content events travel separately (the app's span and log exporters batch on
their own clocks), so whichever comes first waits here for the other, at most `wait_s` seconds
from its arrival. The store is bounded: past `max_entries` entries or `max_bytes` bytes (the
spans' and events' sizes on the wire) the oldest entries leave early, as if their wait were
over, and are counted in `evicted`. What leaves, on time or early, comes back from `due()` for
the caller to settle: a span with content becomes a record (what arrived so far), a span
without any is counted without content, events without their span are counted as such.

The store only holds and matches; it does no I/O and reads time from `clock`, so tests drive
it with a fake one. Keys whose record was made are remembered for one wait (`made`), so the
events of a span that carried its own content too (both content modes on) are dropped, not
held.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.ingester.otlp.content import ContentEvent
from services.ingester.otlp.genai import LLMSpan, SpanKey, join_complete

__all__ = ["JoinStore", "Pending"]

# What an entry costs beside its spans' and events' bytes (the key, the objects).
ENTRY_OVERHEAD = 256


@dataclass
class Pending:
    """A span waiting for its events, events waiting for their span, or both."""

    key: SpanKey
    deadline: float
    span: LLMSpan | None = None
    events: list[ContentEvent] = field(default_factory=list)
    events_size: int = 0

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + (self.span.size if self.span else 0) + self.events_size

    def complete(self) -> bool:
        return self.span is not None and join_complete(self.span, self.events)


class JoinStore:
    """Pending spans and events by key, bounded in entries and bytes."""

    def __init__(
        self,
        wait_s: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wait_s = wait_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self.evicted = 0  # entries that left before their wait was over
        self._pending: OrderedDict[SpanKey, Pending] = OrderedDict()  # oldest first
        self._made: OrderedDict[SpanKey, float] = OrderedDict()  # key -> forgotten at
        self._early: list[Pending] = []  # evicted, not yet handed out by due()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def made(self, key: SpanKey) -> bool:
        """Whether the record of this span was made within the last wait."""
        forget_at = self._made.get(key)
        return forget_at is not None and forget_at > self.clock()

    def mark_made(self, keys: Iterable[SpanKey]) -> None:
        forget_at = self.clock() + self.wait_s
        for key in keys:
            self._made[key] = forget_at
            self._made.move_to_end(key)
        while len(self._made) > self.max_entries:
            self._made.popitem(last=False)

    def span_flows(self, keys: Iterable[SpanKey]) -> set[str]:
        """The flows of the spans waiting under these keys."""
        flows = set()
        for key in keys:
            entry = self._pending.get(key)
            if entry is not None and entry.span is not None:
                flows.add(entry.span.flow)
        return flows

    def add_span(self, span: LLMSpan) -> Pending | None:
        """Hold a span without content; its entry, taken out, once its events are all here."""
        entry = self._entry(span.key)
        if entry.span is not None:
            self.bytes -= entry.span.size  # the same span again: the newer copy stays
        entry.span = span
        self.bytes += span.size
        return self._settle(entry)

    def add_events(self, key: SpanKey, events: list[ContentEvent], size: int) -> Pending | None:
        """Hold a span's events; its entry, taken out, once the span is here and they are all
        here. Events of a span whose record was made already are dropped."""
        if self.made(key):
            return None
        entry = self._entry(key)
        entry.events.extend(events)
        entry.events_size += size
        self.bytes += size
        return self._settle(entry)

    def take(self, key: SpanKey) -> Pending | None:
        """Take an entry out (its span came with content of its own)."""
        entry = self._pending.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
        return entry

    def put_back(self, entries: Iterable[Pending]) -> None:
        """Hold again entries taken out whose records could not be published: a new wait."""
        for entry in entries:
            entry.deadline = self.clock() + self.wait_s
            previous = self._pending.pop(entry.key, None)
            if previous is not None:  # came again meanwhile: keep what both hold
                self.bytes -= previous.size
                entry.span = previous.span or entry.span
                entry.events.extend(previous.events)
                entry.events_size += previous.events_size
            self._pending[entry.key] = entry
            self.bytes += entry.size
        self._bound()

    def due(self, everything: bool = False) -> list[Pending]:
        """Take out the entries whose wait is over, and those evicted early (`everything`:
        every entry, as at a stop)."""
        now = float("inf") if everything else self.clock()
        out, self._early = self._early, []
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.deadline > now:
                break
            del self._pending[key]
            self.bytes -= entry.size
            out.append(entry)
        while self._made and next(iter(self._made.values())) <= now:
            self._made.popitem(last=False)
        return out

    def next_deadline(self) -> float | None:
        """When `due()` will next have something (now, when entries were evicted)."""
        if self._early:
            return self.clock()
        if not self._pending:
            return None
        return next(iter(self._pending.values())).deadline

    def _entry(self, key: SpanKey) -> Pending:
        entry = self._pending.get(key)
        if entry is None:
            entry = Pending(key, self.clock() + self.wait_s)
            self._pending[key] = entry
            self.bytes += entry.size
        return entry

    def _settle(self, entry: Pending) -> Pending | None:
        if entry.complete():
            return self.take(entry.key)
        if entry.size > self.max_bytes:  # alone over the bound: it leaves, not the others
            self._evict(entry.key)
        self._bound()
        return None

    def _evict(self, key: SpanKey) -> None:
        entry = self._pending.pop(key)
        self.bytes -= entry.size
        self.evicted += 1
        self._early.append(entry)

    def _bound(self) -> None:
        while self._pending and (
            len(self._pending) > self.max_entries or self.bytes > self.max_bytes
        ):
            self._evict(next(iter(self._pending)))
