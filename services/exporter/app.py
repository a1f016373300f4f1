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
from faststream.middlewares import AckPolicy
from pydantic import ValidationError

from services.exporter.export import CONSUMES, ExportResult, accept, export_version, store_path
from services.exporter.hub import push_version
from services.exporter.store import ExportStore, StoredEvent
from shared.events import DATASETS_EXPORTED, DatasetExported
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
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._last_export: dict[tuple[str, str], float] = {}
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

    def _check_counts(self, name: str) -> None:
        flow = self.flows[name]
        if flow.export.every_records <= 0:
            return
        for ref in flow.export.formats:
            if self._pending(name, ref.plugin) >= flow.export.every_records:
                self.start_export(name, ref)

    def start_export(self, name: str, ref: PluginRef) -> None:
        """Export one format in the background, unless it is being exported already."""
        key = (name, ref.plugin)
        if key in self._running and not self._running[key].done():
            return
        self._last_export[key] = time.monotonic()
        self._running[key] = asyncio.get_running_loop().create_task(
            self._export(name, ref), name=f"export {name}/{ref.plugin}"
        )

    async def _export(self, name: str, ref: PluginRef) -> None:
        flow = self.flows[name]
        try:
            result = await asyncio.to_thread(self._export_blocking, name, flow, ref)
        except Exception:
            log.exception("export of %s/%s failed; it is tried again later", name, ref.plugin)
            return
        if not result.created:
            return
        if flow.export.push_to_hub is not None:
            await asyncio.to_thread(push_version, self.settings, flow.export.push_to_hub, result)
        event = DatasetExported(
            flow=name,
            format=ref.plugin,
            version=result.version,
            location=str(result.path),
            rows=sum(result.rows.values()),
        )
        await self.context.broker.publish(
            event.to_bytes(), topic=DATASETS_EXPORTED, key=f"{name}/{ref.plugin}".encode()
        )

    def _export_blocking(self, name: str, flow: Flow, ref: PluginRef) -> ExportResult:
        # Its own connection: SQLite's WAL gives it a snapshot while consumption goes on.
        with ExportStore(store_path(self.settings, name)) as store:
            return export_version(self.settings, name, flow, ref, store)

    async def run_timer(self) -> None:
        """Time trigger: export a format `every_s` after its last export when records changed."""
        interval = self.settings.export.check_interval_s
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for name, flow in self.flows.items():
                if flow.export.every_s <= 0:
                    continue
                for ref in flow.export.formats:
                    last = self._last_export.get((name, ref.plugin), started)
                    if now - last >= flow.export.every_s and self._pending(name, ref.plugin):
                        self.start_export(name, ref)

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
    kafka = context.settings.kafka
    context.broker.subscriber(
        *CONSUMES,
        group_id=context.group_id,
        batch=True,
        max_records=500,
        batch_timeout_ms=500,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset=kafka.auto_offset_reset,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
    )(exporter.on_batch)
    exporter.task = asyncio.get_running_loop().create_task(exporter.run_timer(), name="exporter")
    context.on_stop(exporter.close)


SERVICE = ServiceSpec(
    name="exporter",
    consumes=CONSUMES,
    produces=(DATASETS_EXPORTED,),
    register=register,
    description=__doc__ or "",
)
