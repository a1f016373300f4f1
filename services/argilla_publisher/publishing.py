"""One batch's records of one target into Argilla, then announced on `records.published`.

* Records Argilla refuses (`bulk.RefusedError`, found by bisecting their chunk, or too large
  even alone) are dead-lettered one by one with Argilla's reason; the others go on.
* Records annotators already answered are kept as they are in Argilla (not overwritten), logged
  and counted; they are in Argilla, so they are announced like the upserted ones.
* A 404 (the dataset was deleted) re-creates the flow's datasets (the publication's `prepare`
  step) and sends what was pending again, at most once per flow and batch; a dataset still
  missing after that, or one that cannot be re-created, dead-letters those records saying so.
* The announcement on `records.published` comes after Argilla has the records; the broker's
  trouble there is retried for that step alone (`with_retries`), never by upserting again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from services.argilla_publisher.bulk import BulkWriter, DatasetMissingError, payload
from services.argilla_publisher.targets import Publication, Target, sdk_call
from shared.events import RECORDS_PUBLISHED, PublishedRecord, Record
from shared.failures import PermanentError
from shared.metrics import ARGILLA_PUBLISH_SECONDS, record_passed
from shared.service import ServiceContext
from shared.telemetry import context_from_headers, record_span

log = logging.getLogger("loopline.argilla_publisher")

Item = tuple[Any, Record, Any]  # the consumed Kafka record, the Loopline record, its rg.Record
MAX_IDS_LOGGED = 20


class DatasetGoneError(PermanentError):
    """The dataset is missing in Argilla and re-creating it did not bring it back."""


@dataclass
class Publisher:
    """Publishes groups of records; `prepare_again(flow)` re-creates a flow's datasets."""

    context: ServiceContext
    writer: BulkWriter
    publications: dict[str, Publication]
    prepare_again: Callable[[str], Publication]
    kept_answered: int = 0  # records not overwritten because annotators answered them
    recreated: set[str] = field(default_factory=set)  # flows re-created in the current batch

    def start_batch(self) -> None:
        self.recreated.clear()

    def target(self, flow: str, index: int) -> Target:
        return self.publications[flow].targets[index]

    async def publish(self, flow: str, index: int, items: list[Item]) -> int:
        """Publish `items` to the flow's target number `index`; the number that are in Argilla
        (upserted or kept), the others dead-lettered."""
        started = time.perf_counter()
        try:
            return await self._publish(flow, index, items)
        finally:
            ARGILLA_PUBLISH_SECONDS.labels(flow=flow).observe(time.perf_counter() - started)

    async def _publish(self, flow: str, index: int, items: list[Item]) -> int:
        settled = 0
        pending = items
        while pending:
            target = self.target(flow, index)
            built = await self._with_payloads(pending, target)
            payloads = [p for _, p in built]
            result = await self.writer.upsert(str(target.dataset.id), target.name, payloads)
            items_now = [item for item, _ in built]
            for position, refused in sorted(result.refused.items()):
                await self._dead(items_now[position], refused)
            kept = [items_now[p] for p in sorted(result.answered)]
            if kept:
                self._log_kept(target, kept)
            done = [items_now[p] for p in sorted([*result.upserted, *result.answered])]
            await self._announce(target, done)
            settled += len(done)
            if result.missing is None:
                return settled
            rest = [items_now[p] for p in result.pending(len(items_now))]
            why = await self._recreate(flow, target, result.missing)
            if why is not None:
                for item in rest:
                    await self._dead(item, why)
                return settled
            pending = rest
        return settled

    async def _with_payloads(self, items: list[Item], target: Target) -> list[tuple[Item, Any]]:
        """Each item with its bulk payload for `target`'s dataset. Building one is local work on
        that record alone: whatever fails there dead-letters that record, not the batch."""
        built = []
        for item in items:
            try:
                built.append((item, payload(item[2], target.dataset)))
            except Exception as exc:
                await self._dead(item, exc)
        return built

    async def _recreate(
        self, flow: str, target: Target, missing: DatasetMissingError
    ) -> DatasetGoneError | None:
        """Re-create the flow's datasets once per batch; the reason to give up, or None."""
        where = f"{target.workspace}/{target.name}"
        if flow in self.recreated:
            return DatasetGoneError(
                f"Argilla dataset {where} is still missing (404) after it was re-created: {missing}"
            )
        self.recreated.add(flow)
        log.warning("Argilla dataset %s is missing (%s); re-creating it", where, missing)

        try:
            self.publications[flow] = await self.context.dead_letters.with_retries(
                lambda: sdk_call(partial(self.prepare_again, flow)),
                f"re-creating the Argilla dataset {where}",
            )
        except Exception as exc:
            return DatasetGoneError(
                f"Argilla dataset {where} is missing (404) and could not be re-created: "
                f"{type(exc).__name__}: {exc}"
            )
        return None

    async def _announce(self, target: Target, items: list[Item]) -> None:
        broker, dead_letters = self.context.broker, self.context.dead_letters
        topic = self.context.settings.kafka.topic(RECORDS_PUBLISHED)

        async def one(consumed: Any, record: Record) -> None:
            body = PublishedRecord(
                record_id=record.record_id,
                flow=record.flow,
                dataset=target.name,
                workspace=target.workspace,
            ).to_bytes()
            key = record.record_id.encode()
            with record_span(
                self.context.tracer,
                "argilla-publisher announce",
                record.record_id,
                parent=context_from_headers(consumed.headers),  # in Argilla now: its trace
                flow=record.flow,
            ) as span:
                span.set_attribute("loopline.argilla.dataset", f"{target.workspace}/{target.name}")
                await dead_letters.with_retries(
                    lambda: broker.publish(body, topic=topic, key=key),
                    f"announcing {record.record_id} on {topic}",
                )
            record_passed(self.context.name, record.flow, "published")

        await asyncio.gather(*(one(consumed, record) for consumed, record, _ in items))

    async def _dead(self, item: Item, exc: BaseException) -> None:
        await self.context.dead_letters.send_record(item[0], exc, attempts=1)

    def _log_kept(self, target: Target, kept: list[Item]) -> None:
        self.kept_answered += len(kept)
        ids = sorted(record.record_id for _, record, _ in kept)
        shown = ", ".join(ids[:MAX_IDS_LOGGED]) + (", ..." if len(ids) > MAX_IDS_LOGGED else "")
        log.info(
            "kept %d answered record(s) in %s/%s as annotators saw them, not overwritten: %s "
            "(%d since start)",
            len(kept),
            target.workspace,
            target.name,
            shown,
            self.kept_answered,
        )
