"""Exact-duplicate detection: normalised content fingerprints remembered for a time window."""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from shared.events import Record

_SPACE = re.compile(r"\s+")
V = TypeVar("V")


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text: what 'the same content' means for dedup."""
    return _SPACE.sub(" ", text).strip().casefold()


def record_text(record: Record) -> str:
    """The record's prompt, context and responses as one text (for fingerprints and near-dups)."""
    parts = [f"{m.role.value}: {m.content}" for m in record.prompt_messages()]
    if record.messages and record.context:
        parts.append(record.context)
    parts.extend(f"response: {r.text}" for r in record.responses)
    return "\n".join(parts)


def content_fingerprint(record: Record) -> str:
    """Equal for records whose normalised prompt, context and responses are equal."""
    return hashlib.sha256(normalise(record_text(record)).encode()).hexdigest()


class SeenWindow(Generic[V]):
    """Keys remembered for `window_s` seconds, at most `max_entries` (oldest forgotten first)."""

    def __init__(
        self,
        window_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._entries:
            key, (seen_at, _) = next(iter(self._entries.items()))
            if seen_at > horizon and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def get(self, key: str) -> V | None:
        self._expire(self.clock())
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def add(self, key: str, value: V) -> None:
        now = self.clock()
        self._entries.pop(key, None)
        self._entries[key] = (now, value)
        self._expire(now)
