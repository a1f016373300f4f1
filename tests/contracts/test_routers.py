"""The router contract (`services.ingester.routers.base.Router`), over every installed router.

A third-party router is checked too once installed; give it options below if it cannot be
built from `{}`.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from services.ingester.routers.base import Router
from shared.events import Record, RouteDecision
from shared.plugins import PluginKind, PluginRegistry
from tests.contracts.common import SingleRegistry, check_unknown_option_is_refused, installed

KIND = PluginKind.routers
ROUTERS = installed(KIND)

# The least options a router needs to be built; a router not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}

SAMPLE = Record.model_validate(
    {
        "record_id": "contract-sample-1",
        "flow": "default",
        "instruction": "Summarise the meeting notes below in three bullet points.",
        "context": "The team agreed to ship the release on Thursday after the last review.",
        "responses": [{"text": "- Ship on Thursday", "model": "m", "source": "app"}],
        "metadata": {"app": "contract-tests"},
        "tags": ["support"],
    }
)


def build(name: str) -> Router:
    router = PluginRegistry().build(KIND, name, MINIMAL_OPTIONS.get(name, {}))
    assert isinstance(router, Router)
    return router


def check_decisions(router: Router) -> None:
    """`decide` answers a RouteDecision that says who and why, the same for the same record."""
    first = router.decide(SAMPLE)
    assert isinstance(first, RouteDecision)
    assert first.router.strip()
    assert first.reason.strip()
    assert router.decide(SAMPLE) == first


@pytest.mark.parametrize("name", ROUTERS)
def test_decides_with_a_route_decision_the_same_way_twice(name: str) -> None:
    check_decisions(build(name))


# The checks above can fail: broken routers do not pass them.


class FlipFlop(Router):
    """Routes every other call: a retried record would be decided differently."""

    def __init__(self) -> None:
        self.calls = count()

    def decide(self, record: Record) -> RouteDecision:
        routed = next(self.calls) % 2 == 0
        return RouteDecision(routed=routed, router="flip-flop", reason="alternating")


class TakesAnything(Router):
    """Swallows every option, so a typo in a flow would go unnoticed."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def decide(self, record: Record) -> RouteDecision:
        return RouteDecision(routed=True, router="anything", reason="always")


def test_a_router_deciding_differently_on_a_retry_fails_the_checks() -> None:
    with pytest.raises(AssertionError):
        check_decisions(FlipFlop())


def test_a_router_taking_any_option_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="takes any option"):
        check_unknown_option_is_refused(SingleRegistry(TakesAnything), KIND, "anything", {})
