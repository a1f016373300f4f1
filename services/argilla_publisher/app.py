"""argilla-publisher: publishes judged records into Argilla annotation datasets.

Reads `records.judged` in batches (flushed by size or time), maps each record with its flow's
template (fields, questions, metadata, judge scores as suggestions), and upserts them in bulk with
the Argilla record id = `record_id`, so a redelivered event updates instead of duplicating.
Offsets are committed only after Argilla accepted the batch; while Argilla is down the batch is
retried with backoff, nothing is lost. Emits `records.published` per record.

A flow with `publish.when` sends only some judged records to people (`routing.py`): those carry
the reason (`review_reason` in Argilla, `Record.review`); the others are not published (the
exporter auto-accepts them by the same rule), only counted. Counts per flow and reason are
logged per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import argilla as rg
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.argilla_publisher.bulk import RETRY_BUDGET_S, BulkWriter, RefusedError, payload
from services.argilla_publisher.routing import ReviewTally, decide, mark
from services.argilla_publisher.targets import Publication, Target, prepare
from shared.dead_letters import PermanentError
from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, PublishedRecord, Record
from shared.plugins import PluginKind, PluginRegistry
from shared.service import ServiceContext, ServiceSpec
from shared.templates import Template

log = logging.getLogger("loopline.argilla_publisher")


def register(context: ServiceContext) -> None:
    settings = context.settings.argilla
    registry = PluginRegistry()
    api_key = settings.api_key.get_secret_value()
    client = rg.Argilla(api_url=settings.api_url, api_key=api_key)
    writer = BulkWriter(settings.api_url, api_key)
    context.on_stop(writer.aclose)
    publications: dict[str, Publication] = {}
    for name, flow in context.flows.flows.items():
        if flow.publish is None:
            continue
        template: Template = registry.build(
            PluginKind.templates, flow.publish.plugin, flow.publish.options
        )
        publications[name] = prepare(client, name, flow.publish, template, settings.workspace)
    refs = [flow.publish for flow in context.flows.flows.values() if flow.publish is not None]
    batch_size = max((ref.batch_size for ref in refs), default=256)
    flush_ms = int(min((ref.flush_interval_s for ref in refs), default=2.0) * 1000)

    async def on_batch(message: KafkaMessage) -> None:
        groups: dict[Target, list[tuple[Any, Record, Any]]] = defaultdict(list)
        tally = ReviewTally()
        for consumed in message.raw_message:
            try:
                record = Record.model_validate_json(consumed.value or b"")
                publication = publications.get(record.flow)
                if publication is None:
                    context.flow(record.flow)  # unknown flow: PermanentError, dead-lettered
                    log.debug(
                        "flow %s has no publish stage; %s skipped", record.flow, record.record_id
                    )
                    continue
                record, decision = decide(record, publication.when)
                if decision is not None and not decision.to_people:
                    tally.add(record.flow, decision)  # the exporter auto-accepts it
                    context.stats.processed += 1
                    continue
                target = publication.target_for(consumed.partition, consumed.offset)
                argilla_record = mark(publication.template.to_record(record), decision)
                groups[target].append((consumed, record, payload(argilla_record, target.dataset)))
                if decision is not None:
                    tally.add(record.flow, decision)
            except (ValidationError, PermanentError, ValueError) as exc:
                await context.dead_letters.send_record(consumed, exc, attempts=1)
        for target, all_items in groups.items():
            # One bulk upsert may hold a record once: the newest event of a record id wins.
            newest = {record.record_id: (c, record, a) for c, record, a in all_items}
            items = list(newest.values())
            try:
                await writer.upsert(str(target.dataset.id), target.name, [p for _, _, p in items])
            except RefusedError as exc:
                for consumed, _, _ in items:
                    await context.dead_letters.send_record(consumed, exc, attempts=1)
                continue
            sent = [
                await context.broker.publish(
                    PublishedRecord(
                        record_id=record.record_id,
                        flow=record.flow,
                        dataset=target.name,
                        workspace=target.workspace,
                    ).to_bytes(),
                    topic=RECORDS_PUBLISHED,
                    key=record.record_id.encode(),
                    no_confirm=True,
                )
                for _, record, _ in items
            ]
            await asyncio.gather(*sent)
            context.stats.processed += len(items)
            log.info("published %d record(s) to %s/%s", len(items), target.workspace, target.name)
        tally.flush()  # once the batch is in Argilla: a batch consumed again counts again

    context.subscribe_batches(
        [RECORDS_JUDGED],
        on_batch,
        max_records=batch_size,
        batch_timeout_ms=flush_ms,
        max_poll_interval_ms=int((RETRY_BUDGET_S + 60) * 1000),
    )


SERVICE = ServiceSpec(
    name="argilla-publisher",
    consumes=(RECORDS_JUDGED,),
    produces=(RECORDS_PUBLISHED,),
    register=register,
    description=__doc__ or "",
)
