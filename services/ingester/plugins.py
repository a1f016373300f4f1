"""The plugin interfaces of the ingester's steps. Plugins are built as `Plugin(**options)`."""

from __future__ import annotations

from typing import Protocol

from shared.events import Record, RouteDecision


class Redactor(Protocol):
    """Masks sensitive text (`loopline.redactors`)."""

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with every finding masked, and how many findings of each kind."""
        ...


class NearDuplicateDetector(Protocol):
    """Finds records whose text is nearly the same as one seen recently (`loopline.dedupers`)."""

    def check_and_add(self, key: str, text: str) -> str | None:
        """The key of an earlier near-duplicate of `text`; else remember `text` under `key`."""
        ...


class Router(Protocol):
    """Decides whether a record goes on through its flow (`loopline.routers`)."""

    def decide(self, record: Record) -> RouteDecision: ...
