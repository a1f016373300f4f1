"""What the exporter keeps from the topics, and how one version of one format is made.

`accept` turns a consumed `records.completed` or `records.judged` message into the event the
flow's store keeps (or None: the flow exports nothing, or the judged record is not accepted
without people). `export_version` streams the store's rows through aggregation and the format
plugin into a new version with its manifest and curation report; when the data came out the
same as the latest version's, no version is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.exporter.aggregate import (
    Aggregate,
    Questions,
    aggregate_completed,
    aggregate_judged,
    auto_accepts,
)
from services.exporter.formats import Format, test_fraction
from services.exporter.report import write_report
from services.exporter.stats import CurationStats
from services.exporter.store import AUTO, HUMAN, ExportStore, StoredEvent, StoredRow
from services.exporter.versions import VersionWriter, latest_manifest
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED, CompletedRecord, Record
from shared.flows import AutoAccept, Flow, FlowsConfig, PluginRef
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import Settings

log = logging.getLogger("loopline.exporter")

CONSUMES = (RECORDS_COMPLETED, RECORDS_JUDGED)


class UnknownFlowError(ValueError):
    """A message names a flow that is not in the flow file."""


def auto_accept_rule(flow: Flow) -> AutoAccept | None:
    """The flow's rule, or by default: everything when no people are asked, nothing otherwise."""
    if flow.export.auto_accept is not None:
        return flow.export.auto_accept
    return AutoAccept() if flow.publish is None else None


def accept(
    flows: FlowsConfig, topic: str, partition: int, offset: int, value: bytes
) -> tuple[str, StoredEvent] | None:
    """The (flow, event) to keep for a consumed message; raises ValueError for a bad message."""
    if topic == RECORDS_COMPLETED:
        completed = CompletedRecord.model_validate_json(value)
        record, kind, moment = completed.record, HUMAN, completed.completed_at
    elif topic == RECORDS_JUDGED:
        record = Record.model_validate_json(value)
        kind, moment = AUTO, record.updated_at
    else:
        raise ValueError(f"the exporter does not read {topic!r}")
    flow = flows.flows.get(record.flow)
    if flow is None:
        raise UnknownFlowError(f"flow {record.flow!r} is not in this service's flow file")
    if not flow.export.formats:
        return None
    if kind == AUTO:
        rule = auto_accept_rule(flow)
        if rule is None or not auto_accepts(record, rule):
            return None
    event = StoredEvent(
        record_id=record.record_id,
        kind=kind,
        event_time=moment.isoformat(),
        topic=topic,
        partition=partition,
        offset=offset,
        body=value,
    )
    return record.flow, event


def store_path(settings: Settings, flow: str) -> Path:
    return settings.export_dir / flow / "records.sqlite"


def format_dir(settings: Settings, flow: str, format_name: str) -> Path:
    return settings.export_dir / flow / format_name


def open_template(flow: Flow, registry: PluginRegistry) -> Any | None:
    if flow.publish is None:
        return None
    return registry.load(PluginKind.templates, flow.publish.plugin)(**flow.publish.options)


def aggregate_row(row: StoredRow, questions: Questions) -> Aggregate:
    if row.kind == HUMAN:
        return aggregate_completed(CompletedRecord.model_validate_json(row.body), questions)
    return aggregate_judged(Record.model_validate_json(row.body))


@dataclass(frozen=True)
class ExportResult:
    flow: str
    format: str
    version: int  # the new version, or the latest one when nothing changed
    path: Path
    rows: dict[str, int]
    created: bool  # False: the data equals the latest version's, no version was made


def export_version(
    settings: Settings,
    flow_name: str,
    flow: Flow,
    ref: PluginRef,
    store: ExportStore,
    registry: PluginRegistry | None = None,
    on_record: Callable[[], None] | None = None,
) -> ExportResult:
    """Write a new version of one format of a flow from the store (if anything changed)."""
    registry = registry or PluginRegistry()
    fmt: Format = registry.load(PluginKind.formats, ref.plugin)(**ref.options)
    questions = Questions.of(open_template(flow, registry))
    options = flow.export
    pending = store.pending(ref.plugin)
    target = format_dir(settings, flow_name, ref.plugin)
    writer = VersionWriter(
        target,
        {split: fmt.features(split) for split in fmt.splits},
        batch_rows=settings.export.batch_rows,
        shard_rows=settings.export.shard_rows,
    )
    try:
        stats = CurationStats(questions.kinds)
        records = 0
        for row in store.rows(batch=settings.export.batch_rows):
            records += 1
            agg = aggregate_row(row, questions)
            stats.add(agg, row.event_time)
            in_test = test_fraction(row.record_id, options.split_seed) < options.test_size
            for split, out in fmt.rows(agg, "test" if in_test else "train"):
                writer.add(split, out)
            if on_record is not None:
                on_record()
        for split, out in fmt.summary_rows():
            writer.add(split, out)
        rows = writer.counts()
        checksums = writer.close_data()
        previous = latest_manifest(target)
        if previous is not None and previous.get("checksums") == checksums:
            writer.abort()
            store.mark_exported(ref.plugin, pending)
            number = int(previous["version"])
            log.info("%s/%s: unchanged since v%d, no new version", flow_name, ref.plugin, number)
            return ExportResult(flow_name, ref.plugin, number, target / f"v{number}", rows, False)
        offsets = store.offsets()
        summary: dict[str, int | str] = {
            **{f"rows ({split})": n for split, n in rows.items()},
            "records read": records,
        }
        title = f"{flow_name} / {ref.plugin}"
        write_report(stats.report(title, summary), writer.path)
        manifest = {
            "flow": flow_name,
            "format": ref.plugin,
            "options": ref.options,
            "rows": rows,
            "records": records,
            "statuses": dict(sorted(stats.statuses.items())),
            "disagreements": stats.disagreements,
            "time_range": {"first": stats.first_time, "last": stats.last_time},
            "source_offsets": offsets,
            "split": {"test_size": options.test_size, "seed": options.split_seed},
            "schema": {split: fmt.features(split).to_dict() for split in fmt.splits},
            "checksums": checksums,
        }
        number, final = writer.commit(manifest)
    except BaseException:
        writer.abort()
        raise
    store.mark_exported(ref.plugin, pending)
    log.info(
        "%s/%s: wrote v%d (%s) to %s",
        flow_name,
        ref.plugin,
        number,
        ", ".join(f"{split} {n} rows" for split, n in rows.items()),
        final,
    )
    return ExportResult(flow_name, ref.plugin, number, final, rows, True)
