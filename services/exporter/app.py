"""exporter: writes versioned, training-ready datasets from accepted records.

Reads `records.completed` (records people answered) and `records.judged` (kept only when the
flow accepts them without people: see `export.auto_accept`), keeps the newest event per record
in a store per flow on local disk (`<store dir>/<flow>/records.sqlite`), and writes a new
version of each of the flow's formats, to a local directory or a URL (`storage`), after
`every_records` changed records or `every_s` seconds after a change (and on demand: `loopline
export`). Each version is pushed to the Hub when the flow says so
and announced on `datasets.exported`, both retried until done; a version whose announcement a
stop cut off is announced at the next start. Trouble around the records (a locked store, a full
or read-only disk, the broker) is waited out, never dead-lettered; a message that is not a
valid event, or names an unknown flow, goes to the dead-letter topic, alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.trace import Link

from services.exporter.export import (
    CONSUMES,
    ExportResult,
    accept,
    export_versions,
    store_path,
    unannounced,
)
from services.exporter.hub import push_until_done
from services.exporter.retention import retain_flow
from services.exporter.store import WRITE_BATCH, ExportStore, StoredEvent
from shared.events import DATASETS_EXPORTED
from shared.failures import TransientError, is_transient
from shared.flows import Flow, PluginRef
from shared.metrics import record_passed
from shared.service import ServiceContext, ServiceSpec
from shared.telemetry import context_from_headers, link_to, record_span

log = logging.getLogger("loopline.exporter")

T = TypeVar("T")
# An export's span links to at most this many of the records it takes in (the default limit
# of links per span in the OpenTelemetry SDK); each record's own trace has its keep span.
MAX_EXPORT_LINKS = 128


class Exporter:
    """The stores of the flows that export, their triggers, and the exports in progress.

    Trouble around the records (a store locked or on a full or read-only disk, the broker, the
    Hub) is retried in place for as long as it lasts (`DeadLetters.with_retries`: the health
    endpoint says why), so the batch is never dead-lettered for it nor consumed again; only a
    message that is itself bad goes to the dead-letter topic, alone.
    """

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.settings = context.settings
        self.retries = context.dead_letters
        self.flows: dict[str, Flow] = {
            name: flow for name, flow in context.flows.flows.items() if flow.export.formats
        }
        self.settings.export.options()  # a malformed LOOPLINE_EXPORT__STORAGE_OPTIONS: no start
        stores = self.settings.export.stores(self.settings.stack_dir)
        log.info("versions go to %s, record stores to %s", self.settings.export_dir, stores)
        # Writes from the event loop's worker threads, one at a time per store.
        self._stores = {name: ExportStore(store_path(self.settings, name)) for name in self.flows}
        self._locks = {name: threading.Lock() for name in self.flows}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # flows whose export was asked for while one ran
        self._last_export: dict[str, float] = {}
        self._kept_links: dict[str, list[Link]] = {}  # flow -> records kept since its export
        self.task: asyncio.Task[None] | None = None

    async def _retried(self, what: str, blocking: Callable[..., T], *args: Any) -> T:
        """`blocking(*args)` in a worker thread, retried by kind of failure."""
        return await self.retries.with_retries(partial(asyncio.to_thread, blocking, *args), what)

    async def on_batch(self, message: KafkaMessage) -> None:
        by_flow: dict[str, list[tuple[StoredEvent, Any]]] = {}
        for consumed in message.raw_message:
            try:
                kept = accept(
                    self.context.flows,
                    consumed.topic,
                    consumed.partition,
                    consumed.offset,
                    consumed.value or b"",
                    self.settings.kafka,
                )
            except Exception as exc:  # parsing and rules only: the message itself is bad
                if is_transient(exc):  # a newer schema: wait for this exporter's upgrade
                    raise
                await self._dead_letter(consumed, exc)
                continue
            if kept is not None:
                by_flow.setdefault(kept[0], []).append((kept[1], consumed))
        for name, events in by_flow.items():
            await self._keep(name, events)

    async def _keep(self, name: str, kept: list[tuple[StoredEvent, Any]]) -> None:
        """Keep a batch's events of one flow; a failure that is not the store's trouble (that
        is retried) is narrowed down to the events that cause it, each dead-lettered alone."""
        formats = [ref.plugin for ref in self.flows[name].export.formats]
        events = [event for event, _ in kept]
        try:
            changed, due = await self._retried(
                f"keeping {len(events)} record(s) of {name}", self._add, name, events, formats
            )
            record_passed(self.context.name, name, "exported", len(events))
        except Exception:
            log.warning("%s: keeping %d record(s) failed, keeping them one by one", name, len(kept))
            changed, due = 0, False
            for event, consumed in kept:
                try:
                    one, due = await self._retried(
                        f"keeping record {event.record_id} of {name}",
                        self._add,
                        name,
                        [event],
                        formats,
                    )
                    changed += one
                    record_passed(self.context.name, name, "exported")
                except Exception as exc:
                    await self._dead_letter(consumed, exc, int(getattr(exc, "attempts", 1)))
        self.context.stats.processed += len(events)
        self._trace_kept(name, kept)
        log.debug("%s: kept %d event(s), %d record(s) changed", name, len(events), changed)
        if due:
            self.start_export(name)

    async def _dead_letter(self, consumed: Any, exc: BaseException, attempts: int = 1) -> None:
        # The broker's trouble is retried here: the batch is not consumed again for it, so no
        # record of it is dead-lettered twice.
        await self.retries.with_retries(
            partial(self.context.dead_letters.send_record, consumed, exc, attempts),
            f"dead-lettering a message of {consumed.topic}",
        )

    def _add(self, name: str, events: list[StoredEvent], formats: list[str]) -> tuple[int, bool]:
        """Keep the events; (rows changed, whether the count trigger is due)."""
        store = self._stores[name]
        with self._locks[name]:
            try:
                changed = store.add(events, formats)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:
                    raise  # locked or full (transient), or about these events
                # Damaged, or not a database: no record's fault. Waited out (the health
                # endpoint says why) until the file is restored, or removed and rebuilt
                # (`loopline export --from-start`) before a restart.
                raise TransientError(f"the store {store.path} cannot be used: {exc}") from exc
        return changed, self._count_due(name)

    def _pending(self, name: str, format_name: str) -> int:
        with self._locks[name]:
            return self._stores[name].pending(format_name)

    def _due(self, name: str) -> list[PluginRef]:
        """The flow's formats with records changed since their last version."""
        return [r for r in self.flows[name].export.formats if self._pending(name, r.plugin)]

    def _count_due(self, name: str) -> bool:
        every = self.flows[name].export.every_records
        formats = self.flows[name].export.formats
        return every > 0 and any(self._pending(name, r.plugin) >= every for r in formats)

    def start_export(self, name: str) -> None:
        """Export the flow's changed formats in the background (one export per flow at once;
        asked for while one runs, another follows it)."""
        running = self._running.get(name)
        if running is not None and not running.done():
            self._again.add(name)
            return
        self._run(name, self._export(name))

    def start_announcing(self) -> None:
        """Announce the versions made but not announced before the last stop (a crash between
        a version and its announcement, say)."""
        for name in self.flows:
            self._run(name, self._announce_pending(name))

    def _run(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._last_export[name] = time.monotonic()
        self._running[name] = asyncio.get_running_loop().create_task(
            self._then_again(name, work), name=f"export {name}"
        )

    async def _then_again(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            while name in self._again:
                self._again.discard(name)
                self._last_export[name] = time.monotonic()
                await self._export(name)
        except Exception:
            log.exception("exporting %s failed; it is tried again at its next trigger", name)

    def _trace_kept(self, name: str, kept: list[tuple[StoredEvent, Any]]) -> None:
        """A span per kept record in its own trace; the next export's span links to them."""
        links = self._kept_links.setdefault(name, [])
        for event, consumed in kept:
            parent = context_from_headers(consumed.headers)
            with record_span(self.context.tracer, "exporter keep", event.record_id, parent=parent):
                if len(links) < MAX_EXPORT_LINKS:
                    links.extend(link_to(trace.get_current_span()))

    async def _export(self, name: str) -> None:
        """A new version of each changed format, then the announcements not made yet (in a
        span linked to the records kept since the last export)."""
        links = self._kept_links.pop(name, [])
        with self.context.tracer.start_as_current_span(
            f"exporter export {name}", links=links, attributes={"loopline.flow": name}
        ):
            await self._export_in_span(name)

    async def _export_in_span(self, name: str) -> None:
        """The disk's and the store's trouble is retried for as long as it lasts; a failure of
        another kind (a format's bug) is logged, and the next trigger tries again."""
        flow = self.flows[name]
        refs = await self._retried(f"checking {name} for changes", self._due, name)
        if refs:
            try:
                await self._retried(f"exporting {name}", self._export_blocking, name, flow, refs)
            except Exception:
                log.exception("export of %s failed; it is tried again at its next trigger", name)
                return
        await self._announce_pending(name)

    def _export_blocking(self, name: str, flow: Flow, refs: list[PluginRef]) -> list[ExportResult]:
        # Its own connection: SQLite's WAL gives it a snapshot while consumption goes on.
        with ExportStore(store_path(self.settings, name)) as store:
            return export_versions(self.settings, name, flow, refs, store)

    def _unannounced(self, name: str) -> list[ExportResult]:
        with self._locks[name]:
            refs = self.flows[name].export.formats
            return unannounced(self.settings, name, refs, self._stores[name])

    def _mark_announced(self, name: str, result: ExportResult) -> None:
        with self._locks[name]:
            self._stores[name].mark_announced(result.format, result.version)

    async def _announce_pending(self, name: str) -> None:
        """Push (when the flow says so) and announce each version not announced yet, in order;
        each is marked in the store once done, so a stop in between announces it again."""
        flow = self.flows[name]
        pending = await self._retried(f"reading {name}'s announcements", self._unannounced, name)
        for result in pending:
            if flow.export.push_to_hub is not None:
                await push_until_done(self.settings, flow.export.push_to_hub, result, self.retries)
            await self.retries.with_retries(
                partial(self._publish, result.event().to_bytes(), result.key),
                f"announcing {result.flow}/{result.format} v{result.version}",
            )
            await self._retried(f"noting {name}'s announcement", self._mark_announced, name, result)

    async def _publish(self, event: bytes, key: bytes) -> None:
        """Announce on `datasets.exported`. The event is small and valid: whatever fails is the
        broker's trouble (or the broker not started yet, after a restart), so it is retried
        for as long as it lasts."""
        try:
            topic = self.settings.kafka.topic(DATASETS_EXPORTED)
            await self.context.broker.publish(event, topic=topic, key=key)
        except Exception as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

    async def run_timer(self) -> None:
        """Time trigger: export a flow `every_s` after its last export when records changed."""
        interval = self.settings.export.check_interval_s
        started = last_retention = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if now - last_retention >= self.settings.export.retention_check_s:
                last_retention = now
                await self._retain()
            for name, flow in self.flows.items():
                every = flow.export.every_s
                waited = now - self._last_export.get(name, started)
                if every <= 0 or waited < every:
                    continue
                try:
                    due = await asyncio.to_thread(self._due, name)
                except Exception as exc:  # the store's trouble: the next check asks again
                    log.warning("%s: checking for changes failed: %s", name, exc)
                    continue
                if due:
                    self.start_export(name)

    async def _retain(self) -> None:
        """Retention between exports (`retention.retain_flow`); trouble waits for the next.
        A flow being exported is left to its export, which applies retention at its end
        (waiting here for its lock would hold up the other flows' time triggers)."""
        for name, flow in self.flows.items():
            exporting = self._running.get(name)
            if exporting is not None and not exporting.done():
                continue
            formats = [ref.plugin for ref in flow.export.formats]
            try:
                await asyncio.to_thread(retain_flow, self.settings, name, formats)
            except Exception as exc:
                log.warning("%s: retention failed, trying again later: %s", name, exc)

    async def close(self) -> None:
        """Stop the timer; let the exports in progress finish for up to half the shutdown
        timeout, then cancel them (a version made but not announced is announced at the
        next start; changes not exported stay counted in the store)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        running = [task for task in self._running.values() if not task.done()]
        if running:
            log.info("waiting for %d export(s) to finish", len(running))
            _, unfinished = await asyncio.wait(
                running, timeout=self.settings.shutdown_timeout_s / 2
            )
            for task in unfinished:
                log.warning(
                    "%s: cancelled by the stop; it resumes at the next start", task.get_name()
                )
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        for name, store in self._stores.items():
            with self._locks[name]:
                store.close()


def register(context: ServiceContext) -> None:
    exporter = Exporter(context)
    if not exporter.flows:
        log.warning("no flow has `export` formats: nothing will be exported")
    context.subscribe_batches(
        CONSUMES, exporter.on_batch, max_records=WRITE_BATCH, batch_timeout_ms=500
    )
    exporter.task = asyncio.get_running_loop().create_task(exporter.run_timer(), name="exporter")
    exporter.start_announcing()
    context.on_stop(exporter.close)


SERVICE = ServiceSpec(
    name="exporter",
    consumes=CONSUMES,
    produces=(DATASETS_EXPORTED,),
    register=register,
    description=__doc__ or "",
)
