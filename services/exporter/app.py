"""exporter: writes versioned, training-ready datasets from accepted records.

Reads `records.completed` (records people answered) and `records.judged` (kept only when the
flow accepts them without people: see `export.auto_accept`), keeps the newest event per record
in a store per flow (`<export dir>/<flow>/records.sqlite`), and writes a new version of each of
the flow's formats after `every_records` changed records or `every_s` seconds after a change
(and on demand: `loopline export`). Each version emits `datasets.exported`. A message that is
not a valid event, or names an unknown flow, goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.exporter.export import CONSUMES, ExportResult, accept, export_versions, store_path
from services.exporter.hub import push_version
from services.exporter.store import WRITE_BATCH, ExportStore, StoredEvent
from shared.events import DATASETS_EXPORTED
from shared.flows import Flow, PluginRef
from shared.service import ServiceContext, ServiceSpec

log = logging.getLogger("loopline.exporter")


class Exporter:
    """The stores of the flows that export, their triggers, and the exports in progress."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.settings = context.settings
        self.flows: dict[str, Flow] = {
            name: flow for name, flow in context.flows.flows.items() if flow.export.formats
        }
        # Writes from the event loop's worker threads, one at a time per store.
        self._stores = {name: ExportStore(store_path(self.settings, name)) for name in self.flows}
        self._locks = {name: threading.Lock() for name in self.flows}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._last_export: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def on_batch(self, message: KafkaMessage) -> None:
        by_flow: dict[str, list[StoredEvent]] = {}
        for consumed in message.raw_message:
            try:
                kept = accept(
                    self.context.flows,
                    consumed.topic,
                    consumed.partition,
                    consumed.offset,
                    consumed.value or b"",
                )
            except (ValidationError, ValueError) as exc:
                await self.context.dead_letters.send_record(consumed, exc, attempts=1)
                continue
            if kept is not None:
                by_flow.setdefault(kept[0], []).append(kept[1])
        for name, events in by_flow.items():
            formats = [ref.plugin for ref in self.flows[name].export.formats]
            changed = await asyncio.to_thread(self._add, name, events, formats)
            self.context.stats.processed += len(events)
            log.debug("%s: kept %d event(s), %d record(s) changed", name, len(events), changed)
            self._check_counts(name)

    def _add(self, name: str, events: list[StoredEvent], formats: list[str]) -> int:
        with self._locks[name]:
            return self._stores[name].add(events, formats)

    def _pending(self, name: str, format_name: str) -> int:
        with self._locks[name]:
            return self._stores[name].pending(format_name)

    def _due(self, name: str) -> list[PluginRef]:
        """The flow's formats with records changed since their last version."""
        return [r for r in self.flows[name].export.formats if self._pending(name, r.plugin)]

    def _check_counts(self, name: str) -> None:
        every = self.flows[name].export.every_records
        if every <= 0:
            return
        if any(self._pending(name, r.plugin) >= every for r in self.flows[name].export.formats):
            self.start_export(name)

    def start_export(self, name: str) -> None:
        """Export the flow's changed formats in the background (one export per flow at once)."""
        running = self._running.get(name)
        if running is not None and not running.done():
            return
        self._last_export[name] = time.monotonic()
        self._running[name] = asyncio.get_running_loop().create_task(
            self._export(name), name=f"export {name}"
        )

    async def _export(self, name: str) -> None:
        flow = self.flows[name]
        refs = self._due(name)
        if not refs:
            return
        try:
            results = await asyncio.to_thread(self._export_blocking, name, flow, refs)
        except Exception:
            log.exception("export of %s failed; it is tried again later", name)
            return
        for result in results:
            if result.created:
                await self._announce(flow, result)

    async def _announce(self, flow: Flow, result: ExportResult) -> None:
        if flow.export.push_to_hub is not None:
            await asyncio.to_thread(push_version, self.settings, flow.export.push_to_hub, result)
        await self.context.broker.publish(
            result.event().to_bytes(), topic=DATASETS_EXPORTED, key=result.key
        )

    def _export_blocking(self, name: str, flow: Flow, refs: list[PluginRef]) -> list[ExportResult]:
        # Its own connection: SQLite's WAL gives it a snapshot while consumption goes on.
        with ExportStore(store_path(self.settings, name)) as store:
            return export_versions(self.settings, name, flow, refs, store)

    async def run_timer(self) -> None:
        """Time trigger: export a flow `every_s` after its last export when records changed."""
        interval = self.settings.export.check_interval_s
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for name, flow in self.flows.items():
                every = flow.export.every_s
                waited = now - self._last_export.get(name, started)
                if every > 0 and waited >= every and self._due(name):
                    self.start_export(name)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        running = [task for task in self._running.values() if not task.done()]
        if running:
            log.info("waiting for %d export(s) to finish", len(running))
            await asyncio.gather(*running, return_exceptions=True)
        for store in self._stores.values():
            store.close()


def register(context: ServiceContext) -> None:
    exporter = Exporter(context)
    if not exporter.flows:
        log.warning("no flow has `export` formats: nothing will be exported")
    context.subscribe_batches(
        CONSUMES, exporter.on_batch, max_records=WRITE_BATCH, batch_timeout_ms=500
    )
    exporter.task = asyncio.get_running_loop().create_task(exporter.run_timer(), name="exporter")
    context.on_stop(exporter.close)


SERVICE = ServiceSpec(
    name="exporter",
    consumes=CONSUMES,
    produces=(DATASETS_EXPORTED,),
    register=register,
    description=__doc__ or "",
)
