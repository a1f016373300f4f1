"""The loop benchmark's bot annotators, the same for Loopline and the anchor: two `agree` bots
(`devstack.annotators`) answering through Argilla's REST API as annotators, with the time of
their Argilla calls counted per kind."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from devstack.annotators.agree import AgreePolicy
from devstack.annotators.runner import RunOptions, RunReport, annotate_flow
from shared.flows import Flow
from shared.settings import ArgillaSettings

BOTS = 2


class Marks:
    """When a growing count first reached 1, half of `wanted` and `wanted`."""

    def __init__(self, wanted: int) -> None:
        self.shares = (1, (wanted + 1) // 2, wanted)
        self._times: list[float] = []

    def update(self, count: int, now: float) -> None:
        for share in self.shares[len(self._times) :]:
            if count < share:
                break
            self._times.append(now)

    @property
    def times(self) -> tuple[float, float, float] | None:
        """(first, half, all), once all were reached."""
        if len(self._times) < len(self.shares):
            return None
        return self._times[0], self._times[1], self._times[2]


class BotClock:
    """The bots' progress hook: their latest report, and when they had answered their first
    record, half and all (seconds after `t0`)."""

    def __init__(self, wanted: int) -> None:
        self.t0 = time.monotonic()
        self.marks = Marks(wanted)
        self.report: RunReport | None = None

    def __call__(self, report: RunReport) -> None:
        self.report = report
        self.marks.update(report.answered, time.monotonic() - self.t0)


class TimedTransport(httpx.AsyncBaseTransport):
    """The network, with the time and count of the bots' Argilla calls per kind: the owner's
    record listings, the bots' bulk answers, the rest."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        answer = await self._inner.handle_async_request(request)
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])  # still encoded
        await answer.aclose()
        path = request.url.path
        kind = "list" if path.endswith("/records") else "answer" if "bulk" in path else "other"
        self.seconds[kind] = self.seconds.get(kind, 0.0) + time.monotonic() - started
        self.calls[kind] = self.calls.get(kind, 0) + 1
        return httpx.Response(
            answer.status_code,
            headers=answer.headers,
            stream=httpx.ByteStream(raw),
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    def line(self) -> str:
        return ", ".join(
            f"{kind} {self.calls[kind]} calls {self.seconds[kind]:.1f} s" for kind in self.calls
        )


async def bots(
    argilla: ArgillaSettings,
    flow_name: str,
    flow: Flow,
    idle_timeout_s: float,
    rate_per_s: float | None = None,
    progress: Callable[[RunReport], None] | None = None,
    transport: TimedTransport | None = None,
) -> RunReport:
    """Two `agree` bots (the judge's suggestions, defaults: no disagreement, no discards);
    `rate_per_s` bounds their answers a second (and so their bulks' size), None: bulks of 100.
    With `idle_timeout_s` 0 they stop as soon as nothing is pending (before the flow's dataset
    exists: at once, their accounts made)."""
    return await annotate_flow(
        argilla,
        flow_name,
        flow,
        AgreePolicy(),
        bots=BOTS,
        options=RunOptions(idle_timeout_s=idle_timeout_s, rate_per_s=rate_per_s),
        progress=progress,
        transport=transport,
    )
