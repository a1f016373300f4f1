"""The router contract (`loopline.routers`): does a record go on through its flow, and why?

A flow names its router under `route:`, e.g. `route: {plugin: rules, options: {...}}`; without
one the ingester uses `all`. A third-party router registers like a built-in::

    [project.entry-points."loopline.routers"]
    my-router = "my_package.routing:MyRouter"
"""

from __future__ import annotations

from abc import abstractmethod

from shared.events import Record, RouteDecision
from shared.plugins import Plugin


class Router(Plugin):
    """Decides, per record, whether it goes on to the flow's next stage.

    Options: the constructor's keyword parameters, checked as `shared.plugins.Plugin` says.
    """

    @abstractmethod
    def decide(self, record: Record) -> RouteDecision:
        """The decision for one validated, redacted, deduplicated record.

        `routed=True` sends it to the flow's next stage, `routed=False` to `records.unrouted`;
        `router` names the plugin and `reason` says why, for people reading the record later.
        Called once per record, in arrival order; it must not raise for any valid `Record`.
        Apart from state it keeps on purpose (a rate cap), the same record gets the same
        decision: a retried record must not be sampled differently.
        """
