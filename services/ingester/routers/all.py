"""The `all` router: the default, every record goes on."""

from __future__ import annotations

from services.ingester.routers.base import Router
from shared.events import Record, RouteDecision


class RouteAll(Router):
    """Every record goes on (`loopline.routers: all`). It takes no options."""

    def decide(self, record: Record) -> RouteDecision:
        return RouteDecision(routed=True, router="all", reason="every record is routed")
