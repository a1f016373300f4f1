"""Routing plugins decide whether a record goes on through its flow."""

from __future__ import annotations

from typing import Any

from shared.events import Record, RouteDecision

class RouteAll:
    """The default router: every record goes on."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ValueError(f"router 'all' takes no options, got {sorted(options)}")

    def decide(self, record: Record) -> RouteDecision:
        return RouteDecision(routed=True, router="all", reason="every record is routed")
