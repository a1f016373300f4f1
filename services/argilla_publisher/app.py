"""argilla-publisher: publishes judged records into Argilla annotation datasets.

At start, once its health port is up, it creates (or finds) every flow's workspaces and
datasets (`targets.py`) before it consumes anything; an Argilla that does not answer yet is
waited for, `/healthz` naming its address, and a dataset whose settings drifted ends the start.
Reads `records.judged` in batches (flushed by size or time), maps each record with its flow's
template (fields, questions, metadata, judge scores as suggestions), and upserts them in bulk with
the Argilla record id = `record_id`, so a redelivered event updates instead of duplicating, unless
annotators answered that record already: then the version they answered is kept (`bulk.py`).
Offsets are committed only after Argilla settled the batch. Argilla's trouble (down, 5xx, 429,
timeouts) is retried in place for as long as it lasts, nothing is lost nor dead-lettered; a
record Argilla refuses is dead-lettered alone; a deleted dataset is re-created (`publishing.py`).
Emits `records.published` per record. In split mode a record's annotator is a function of its
id (`targets.split_index`).

The consumer waits in place while Argilla is in trouble, so its batch may take long: its
`max_poll_interval_ms` is the Kafka settings' (an hour by default). Past it, the group gives the
partitions to another member and the batch is consumed again: upserts are idempotent, answered
records are never overwritten, so that costs time, not records.

A flow with `publish.when` sends only some judged records to people (`routing.py`): those carry
the reason (`review_reason` in Argilla, `Record.review`); the others are not published (the
exporter auto-accepts them by the same rule), only counted. Counts per flow and reason are
logged per batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import cache, partial

import argilla as rg
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace

from services.argilla_publisher.bulk import BulkWriter
from services.argilla_publisher.publishing import Item, Publisher
from services.argilla_publisher.routing import ReviewTally, decide, mark
from services.argilla_publisher.targets import Publication, prepare, sdk_call, split_index
from shared.argilla_metadata import TRACE_METADATA_KEY
from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, Record, read_event
from shared.failures import is_transient
from shared.plugins import PluginKind, PluginRegistry
from shared.service import ServiceContext, ServiceSpec
from shared.telemetry import context_from_headers, current_traceparent, link_to, record_span
from shared.templates import Template

log = logging.getLogger("loopline.argilla_publisher")


def register(context: ServiceContext) -> None:
    settings = context.settings.argilla
    registry = PluginRegistry()
    api_key = settings.api_key_value()
    writer = BulkWriter(settings.api_url, api_key, retry=context.dead_letters.with_retries)
    context.on_stop(writer.aclose)
    templates: dict[str, Template] = {
        name: registry.build(PluginKind.templates, flow.publish.plugin, flow.publish.options)
        for name, flow in context.flows.flows.items()
        if flow.publish is not None
    }

    @cache  # made once it succeeds: its constructor already asks Argilla who the key is
    def client() -> rg.Argilla:
        # No retries of its own (they take seconds per call): ours back off and say so.
        return rg.Argilla(api_url=settings.api_url, api_key=api_key, retries=0)

    def prepare_flow(flow: str) -> Publication:
        """The flow's datasets in Argilla, created if need be (synchronous SDK calls)."""
        ref = context.flows.flows[flow].publish
        assert ref is not None  # only flows with a publish stage have a template
        return prepare(client(), flow, ref, templates[flow], settings.workspace)

    publications: dict[str, Publication] = {}

    async def prepare_all() -> None:
        for flow in templates:
            publications[flow] = await context.dead_letters.with_retries(
                partial(sdk_call, partial(prepare_flow, flow)),
                f"preparing flow {flow}'s datasets in the Argilla at {settings.api_url}",
            )

    context.before_consuming(prepare_all)
    publisher = Publisher(context, writer, publications, prepare_flow)
    refs = [flow.publish for flow in context.flows.flows.values() if flow.publish is not None]
    batch_size = max((ref.batch_size for ref in refs), default=256)
    flush_ms = int(min((ref.flush_interval_s for ref in refs), default=2.0) * 1000)

    async def on_batch(message: KafkaMessage) -> None:
        groups: dict[tuple[str, int], list[Item]] = defaultdict(list)  # (flow, target) -> items
        tally = ReviewTally()
        for consumed in message.raw_message:
            try:
                record = read_event(Record, consumed.value or b"")
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
                index = split_index(record.record_id, len(publication.targets))
                with record_span(
                    context.tracer,
                    "argilla-publisher prepare",
                    record.record_id,
                    parent=context_from_headers(consumed.headers),
                    flow=record.flow,
                    links=link_to(trace.get_current_span()),  # the batch's span
                ):
                    argilla_record = mark(publication.template.to_record(record), decision)
                    # The collector's spans for its answers join the record's trace from here.
                    if traceparent := current_traceparent():
                        argilla_record.metadata[TRACE_METADATA_KEY] = traceparent
                groups[(record.flow, index)].append((consumed, record, argilla_record))
                if decision is not None:
                    tally.add(record.flow, decision)
            except Exception as exc:
                if is_transient(exc):  # nothing was upserted yet: the batch is tried again
                    raise
                # Local work on this record alone: it is dead-lettered, the others go on.
                await context.dead_letters.send_record(consumed, exc, attempts=1)
        publisher.start_batch()
        for (flow, index), all_items in groups.items():
            # One bulk upsert may hold a record once: the newest event of a record id wins.
            items = list({record.record_id: (c, record, a) for c, record, a in all_items}.values())
            settled = await publisher.publish(flow, index, items)
            context.stats.processed += settled
            target = publisher.target(flow, index)
            log.info("published %d record(s) to %s/%s", settled, target.workspace, target.name)
        tally.flush()  # once the batch is in Argilla: a batch consumed again counts again

    context.subscribe_batches(
        [RECORDS_JUDGED], on_batch, max_records=batch_size, batch_timeout_ms=flush_ms
    )


SERVICE = ServiceSpec(
    name="argilla-publisher",
    consumes=(RECORDS_JUDGED,),
    produces=(RECORDS_PUBLISHED,),
    register=register,
    description=__doc__ or "",
)
