"""OTLP export requests to records: spans with their own content, and spans joined to the
GenAI log-record events that carry it.

`/v1/traces` and `/v1/logs` parse and convert a body off the event loop (`prepare_traces`,
`content_events`), then hand it to `OTLPIngest`, which owns the join (`otlp.join.JoinStore`):

- an LLM span with content becomes a record at once (events already waiting for it are
  dropped: the span says it all, so an app with both content modes on makes one record);
- an LLM span without content waits for its events, events wait for their span; once both
  are there the request that completed the pair makes the record;
- what is still waiting when the wait is over is settled by a background task: a span with
  part of its content (the answer never came) still becomes a record, a span without any is
  counted without content (`otlp_spans_without_content`), events without a span are counted
  (`otlp_events_without_span`).

A failed publish (503) puts every pair the request took out back to wait again, less the
events the request brought (the exporter sends them again), so the retry finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.ingester.otlp.genai import LLMSpan, SpanKey, llm_spans, span_record
from services.ingester.otlp.join import JoinStore, Pending
from services.ingester.otlp.logs import LogConversion
from services.ingester.pipeline import IngestPipeline, IngestResult, PublishFailed
from shared.settings import IngestSettings
from shared.telemetry import context_of_span

__all__ = ["OTLPIngest", "Outcome", "PreparedTraces", "prepare_traces"]

log = logging.getLogger("loopline.ingester.otlp")

Authorize = Callable[[set[str]], None]


@dataclass
class PreparedTraces:
    """The LLM spans of a traces export, each with the record its own content makes (or None)."""

    spans: list[tuple[LLMSpan, dict[str, Any] | None]]
    not_llm: int


def prepare_traces(export: Any, default_flow: str) -> PreparedTraces:
    spans, not_llm = llm_spans(export, default_flow)
    return PreparedTraces([(span, span_record(span)) for span in spans], not_llm)


@dataclass
class Outcome:
    """What to answer: how many spans (log records) were rejected, and the first reason."""

    rejected: int = 0
    reason: str = ""


@dataclass
class _Batch:
    """Records about to be ingested, with the join entries they came from."""

    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[SpanKey] = field(default_factory=list)
    taken: list[Pending] = field(default_factory=list)  # entries taken out of the store
    without_content: int = 0

    def add(self, key: SpanKey, record: dict[str, Any] | None) -> None:
        if record is None:
            self.without_content += 1
        else:
            self.records.append(record)
            self.keys.append(key)

    def add_joined(self, entry: Pending) -> None:
        self.taken.append(entry)
        assert entry.span is not None
        self.add(entry.key, span_record(entry.span, entry.events))


class OTLPIngest:
    """The records of OTLP traces and logs, through the span/event join."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        settings: IngestSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.store = JoinStore(
            settings.otlp_join_wait_s,
            settings.otlp_join_max_entries,
            settings.otlp_join_max_bytes,
            clock,
        )
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def stats(self) -> dict[str, int]:
        return {"otlp_join_waiting": len(self.store), "otlp_join_bytes": self.store.bytes}

    async def traces(self, prepared: PreparedTraces, authorize: Authorize) -> Outcome:
        authorize({span.flow for span, _ in prepared.spans})
        batch = _Batch()
        stats = self.pipeline.stats
        for span, record in prepared.spans:
            if record is not None or not span.joinable:
                entry = self.store.take(span.key) if span.joinable else None
                if entry is not None:  # its events came first, but it has content of its own
                    batch.taken.append(entry)
                batch.add(span.key, record)
                continue
            entry = self.store.add_span(span)
            if entry is None:
                stats.otlp_spans_held += 1
            else:  # its events were here first
                batch.add_joined(entry)
        self.pipeline.stats_otlp(prepared.not_llm, batch.without_content)
        try:
            result = await self._ingest(batch)
        finally:
            self._schedule()
        return self._outcome(result, batch, [1] * len(batch.records), [], "span")

    async def logs(self, conversion: LogConversion, authorize: Authorize) -> Outcome:
        authorize(self.store.span_flows(conversion.by_span))
        stats = self.pipeline.stats
        stats.otlp_log_records_ignored += conversion.ignored
        stats.otlp_events_rejected += len(conversion.rejected)
        batch = _Batch()
        for key, found in conversion.by_span.items():
            entry = self.store.add_events(key, found.events, found.size)
            if entry is not None:
                batch.add_joined(entry)
        self.pipeline.stats_otlp(0, batch.without_content)
        try:
            result = await self._ingest(batch, conversion)
        finally:
            self._schedule()
        sizes = [len(conversion.by_span[key].events) for key in batch.keys]
        return self._outcome(result, batch, sizes, conversion.rejected, "log record")

    async def _ingest(
        self, batch: _Batch, brought: LogConversion | None = None
    ) -> IngestResult | None:
        result = None
        if batch.records:
            try:
                # Each record joins the app's trace, a child of the span it was made from.
                parents = [context_of_span(*key) for key in batch.keys]
                result = await self.pipeline.ingest(batch.records, parents=parents.__getitem__)
            except PublishFailed:
                self.store.put_back(_less(batch.taken, brought))
                raise
        self.store.mark_made(batch.keys)  # their late events are dropped, not held
        return result

    @staticmethod
    def _outcome(
        result: IngestResult | None,
        batch: _Batch,
        sizes: Sequence[int],
        refused: list[str],
        item: str,
    ) -> Outcome:
        """`sizes`: per record of the batch, how many of the request's items it came from."""
        reasons = list(refused)
        rejected = len(refused)
        for rejection in result.rejected if result else []:
            rejected += sizes[rejection.index]
            trace_id, span_id = batch.keys[rejection.index]
            first = rejection.errors[0]
            reasons.append(
                f"the record of span {span_id} (trace {trace_id}): {first.path}: {first.message}"
            )
        if not rejected:
            return Outcome()
        reason = f"{rejected} {item}(s) rejected; the first: {reasons[0]}"
        log.warning("OTLP: %s", reason)
        return Outcome(rejected, reason)

    # ----------------------------------------------------------------------------------------
    # What waited long enough

    async def settle_due(self, everything: bool = False) -> None:
        """Settle what stopped waiting (`everything`: all that waits, as at a stop): records
        of spans with content (what came), counts of the rest."""
        batch = _Batch()
        events_alone = 0
        for entry in self.store.due(everything):
            if entry.span is None:
                events_alone += len(entry.events)
            else:
                batch.add_joined(entry)
        stats = self.pipeline.stats
        stats.otlp_events_without_span += events_alone
        stats.otlp_join_evicted = self.store.evicted
        self.pipeline.stats_otlp(0, batch.without_content)
        if events_alone:
            log.info("OTLP: %d GenAI log event(s) whose span never came", events_alone)
        try:
            result = await self._ingest(batch)
        except PublishFailed as exc:
            log.warning("OTLP: %d joined span(s) wait again: %s", len(batch.records), exc)
            return
        self._outcome(result, batch, [1] * len(batch.records), [], "span")

    def _schedule(self) -> None:
        """Make sure a sweeper runs while anything waits (on the running loop)."""
        if self.store.next_deadline() is None:
            return
        loop = asyncio.get_running_loop()
        sweeper = self._sweeper
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep(), name="otlp-join-sweeper")

    async def _sweep(self) -> None:
        while (deadline := self.store.next_deadline()) is not None:
            await asyncio.sleep(max(0.0, deadline - self.store.clock()))
            try:
                await self.settle_due()
            except Exception:
                log.exception("OTLP: settling the span/event join failed")

    async def settle_all(self) -> None:
        """At a stop, while the broker still runs: settle everything that waits now, as if its
        wait were over (a span with part of its content still becomes a record), so no span
        the app was told was taken is dropped."""
        waiting = len(self.store)
        if waiting:
            log.info("OTLP: settling %d waiting span(s) or event group(s) before the stop", waiting)
            await self.settle_due(everything=True)

    async def close(self) -> None:
        """Stop the sweeper; say what was still waiting (the broker is gone by now)."""
        if self._sweeper is not None and not self._sweeper.done():
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._sweeper
        if len(self.store):
            log.warning(
                "OTLP: %d span(s) or event groups were still waiting for each other at stop "
                "(their publish failed while settling them); their records are not made",
                len(self.store),
            )


def _less(entries: list[Pending], brought: LogConversion | None) -> list[Pending]:
    """The entries without the events this request brought (its retry brings them again)."""
    if brought is None:
        return entries
    for entry in entries:
        found = brought.by_span.get(entry.key)
        if found is not None and found.events:
            del entry.events[-len(found.events) :]
            entry.events_size -= found.size
    return entries
