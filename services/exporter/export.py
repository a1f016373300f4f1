"""What the exporter keeps from the topics, and how one version of one format is made.

`accept` turns a consumed `records.completed` or `records.judged` message into the event the
flow's store keeps (or None: the flow exports nothing, or the judged record is not accepted
without people). With `publish.when`, the judged records that `shared.review` does not send to
people are auto-accepted, stored with their decision on `Record.review`. `export_versions`
streams the store's rows, once, through aggregation and each format plugin into a new version
per format with its manifest and curation report; when a format's data came out the same as
its latest version's, no version is made.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.exporter.aggregate import auto_accepts
from services.exporter.formats.base import Format, Row
from services.exporter.record_pass import load_formats, run_pass, workers_for
from services.exporter.report import write_report
from services.exporter.stats import CurationStats
from services.exporter.storage import Location, join, versions_locked, versions_of
from services.exporter.store import AUTO, HUMAN, ExportStore, StoredEvent
from services.exporter.versions import VersionWriter, rows_table
from shared.events import (
    RECORDS_COMPLETED,
    RECORDS_JUDGED,
    CompletedRecord,
    DatasetExported,
    Record,
    read_event,
)
from shared.flows import AutoAccept, ExportRef, Flow, FlowsConfig, PluginRef
from shared.plugins import PluginRegistry
from shared.review import review
from shared.settings import KafkaSettings, Settings

log = logging.getLogger("loopline.exporter")

REPORT_FILE = "report.html"
PLOTS_DIR = "plots"

CONSUMES = (RECORDS_COMPLETED, RECORDS_JUDGED)


class UnknownFlowError(ValueError):
    """A message names a flow that is not in the flow file."""


def auto_accept_rule(flow: Flow) -> AutoAccept | None:
    """The flow's rule, or by default: everything when no people are asked or when people see
    only some records (`publish.when`: the others), nothing otherwise."""
    if flow.export.auto_accept is not None:
        return flow.export.auto_accept
    return AutoAccept() if flow.publish is None or flow.publish.when is not None else None


def auto_accepted(flow: Flow, record: Record) -> Record | None:
    """The judged record as the flow auto-accepts it, or None when it does not.

    With `publish.when`, a record the rule sends to people is accepted only once they answered
    (`records.completed`); any other is auto-accepted (by `export.auto_accept` when given) and
    carries its decision (`Record.review`), as a record sent to people carries it. A flow with
    neither a judge nor people has nothing to decide with: its records are accepted as they
    are, responses in their order.
    """
    if flow.judge is None and flow.publish is None:
        return record
    rule = auto_accept_rule(flow)
    if rule is None:
        return None
    when = flow.publish.when if flow.publish is not None else None
    if when is None:
        return record if auto_accepts(record, rule) else None
    decision = review(record, when)
    if decision.to_people or not auto_accepts(record, rule):
        return None
    return record.model_copy(update={"review": decision})


def accept(
    flows: FlowsConfig,
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    kafka: KafkaSettings | None = None,
) -> tuple[str, StoredEvent] | None:
    """The (flow, event) to keep for a consumed message; raises ValueError for a bad message.

    `topic` is the topic the message was read from, as named on the cluster of the flow set
    `kafka` (None: with no prefix): its logical name says what the message is, and the event
    keeps it as it is, as the store's offsets do."""
    name = kafka.logical_topic(topic) if kafka is not None else topic
    if name == RECORDS_COMPLETED:
        completed = read_event(CompletedRecord, value)
        record, kind, moment = completed.record, HUMAN, completed.completed_at
    elif name == RECORDS_JUDGED:
        record = read_event(Record, value)
        kind, moment = AUTO, record.updated_at
    else:
        raise ValueError(f"the exporter does not read {topic!r}")
    flow = flows.flows.get(record.flow)
    if flow is None:
        raise UnknownFlowError(f"flow {record.flow!r} is not in this service's flow file")
    if not flow.export.formats:
        return None
    if kind == AUTO:
        kept = auto_accepted(flow, record)
        if kept is None:
            return None
        if kept is not record:  # it carries its review decision now
            value = kept.to_bytes()
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
    """The flow's record store: always on local disk (`ExportSettings.stores`)."""
    return settings.export.stores(settings.stack_dir) / flow / "records.sqlite"


def format_dir(settings: Settings, flow: str, format_name: str) -> Location:
    """Where the format's versions go: a local directory, or a URL (`storage`)."""
    return join(settings.export_dir, flow, format_name)


@dataclass(frozen=True)
class ExportResult:
    flow: str
    format: str
    version: int  # the new version, the latest one when nothing changed, 0 with no rows
    path: Location  # the version's directory or URL (the format's with no rows)
    rows: dict[str, int]
    created: bool  # False: no rows, or the data equals the latest version's: no version made

    def event(self) -> DatasetExported:
        """The `datasets.exported` announcement of this version."""
        return DatasetExported(
            flow=self.flow,
            format=self.format,
            version=self.version,
            location=str(self.path),
            rows=sum(self.rows.values()),
        )

    @property
    def key(self) -> bytes:
        return f"{self.flow}/{self.format}".encode()


def unannounced(
    settings: Settings, flow_name: str, refs: Sequence[PluginRef], store: ExportStore
) -> list[ExportResult]:
    """The versions of the flow's formats made but not announced yet, oldest first. A format
    new to the store starts from what is there (`ExportStore.start_announcing`)."""
    found: list[ExportResult] = []
    for ref in refs:
        storage = versions_of(settings, flow_name, ref.plugin)
        done = store.announced(ref.plugin)
        there = storage.numbers()
        if done is None:
            store.start_announcing(ref.plugin, there[-1] if there else 0)
            continue
        for number in (n for n in there if n > done):
            manifest = storage.read_manifest(number)
            rows = {split: int(n) for split, n in manifest["rows"].items()}
            path = storage.location(number)
            found.append(ExportResult(flow_name, ref.plugin, number, path, rows, True))
    return found


@dataclass
class _Pending:
    """One format's version being written."""

    ref: PluginRef
    fmt: Format
    writer: VersionWriter
    pending: int


def export_versions(
    settings: Settings,
    flow_name: str,
    flow: Flow,
    refs: Sequence[PluginRef],
    store: ExportStore,
    registry: PluginRegistry | None = None,
    on_records: Callable[[int], None] | None = None,
) -> list[ExportResult]:
    """Write a new version of each format in `refs` (if its data changed), in one pass over
    the store: each record is aggregated once and fed to every format."""
    formats = load_formats(refs, registry or PluginRegistry())
    storages = [versions_of(settings, flow_name, ref.plugin) for ref in refs]
    for ref, storage in zip(refs, storages, strict=True):
        # What is there before this export was announced (see `unannounced`).
        there = storage.numbers()
        store.start_announcing(ref.plugin, there[-1] if there else 0)
    jobs: list[_Pending] = []
    try:
        for ref, fmt, storage in zip(refs, formats, storages, strict=True):
            writer = VersionWriter(
                storage,
                {split: fmt.features(split) for split in fmt.splits},
                batch_rows=settings.export.batch_rows,
                shard_rows=settings.export.shard_rows,
            )
            jobs.append(_Pending(ref, fmt, writer, store.pending(ref.plugin)))
        stats = CurationStats({})  # the pass's counts: each chunk's, merged in order
        records = 0
        workers = workers_for(settings.export, store.count())
        batches = store.batches(settings.export.batch_rows)
        for chunk in run_pass(flow, refs, batches, workers, registry):
            for job, tables in zip(jobs, chunk.tables, strict=True):
                for split, table in tables.items():
                    job.writer.add(split, table)
            stats.merge(chunk.stats)
            records += chunk.records
            if on_records is not None:
                on_records(chunk.records)
        results = _finish(flow_name, flow.export, jobs, stats, records, store.offsets())
    except BaseException:
        for job in jobs:
            job.writer.abort()
        raise
    for job in jobs:
        store.mark_exported(job.ref.plugin, job.pending)
    return results


def _finish(
    flow_name: str,
    options: ExportRef,
    jobs: list[_Pending],
    stats: CurationStats,
    records: int,
    offsets: dict[str, dict[str, int]],
) -> list[ExportResult]:
    """Close each format's data and commit it as a new version unless it has no rows or
    equals the latest.

    Whether it equals the latest is decided under the formats' version lock, held until the
    new versions are committed: another export of the flow finishing meanwhile (`loopline
    export` beside the service) cannot make the same data a second version, nor leave an
    older version the latest. The curation report describes the records, not a format (rows
    per split are in the manifest): it is drawn once per pass and copied into every new
    version.
    """
    closed: list[tuple[_Pending, dict[str, int], dict[str, str]]] = []
    for job in jobs:
        summary_rows: dict[str, list[Row]] = {}
        for split, out in job.fmt.summary_rows(stats):
            summary_rows.setdefault(split, []).append(out)
        for split, made in summary_rows.items():
            job.writer.add(split, rows_table(made, job.fmt.features(split)))
        closed.append((job, job.writer.counts(), job.writer.close_data()))
    results: dict[str, ExportResult] = {}
    with versions_locked([job.writer.storage for job in jobs]):
        changed: list[tuple[_Pending, dict[str, int], dict[str, str]]] = []
        for job, rows, checksums in closed:
            name, storage = job.ref.plugin, job.writer.storage
            previous = storage.latest_manifest()
            if not any(rows.values()):  # nothing to train on, nothing `load_dataset` can read
                job.writer.abort()
                log.warning("%s/%s: no rows, no version written", flow_name, name)
                results[name] = ExportResult(flow_name, name, 0, storage.location(), rows, False)
            elif previous is not None and previous.get("checksums") == checksums:
                job.writer.abort()
                number = int(previous["version"])
                log.info("%s/%s: unchanged since v%d, no new version", flow_name, name, number)
                latest = storage.location(number)
                results[name] = ExportResult(flow_name, name, number, latest, rows, False)
            else:
                changed.append((job, rows, checksums))
        if changed:
            # Only what describes the records: the same report whichever formats share it.
            summary: dict[str, int | str] = {"records read": records}
            first = changed[0][0].writer.path
            title = f"{flow_name}: curation of {records} records"
            write_report(stats.report(title, summary), first)
            for job, _, _ in changed[1:]:
                shutil.copy2(first / REPORT_FILE, job.writer.path / REPORT_FILE)
                shutil.copytree(first / PLOTS_DIR, job.writer.path / PLOTS_DIR)
        for job, rows, checksums in changed:
            results[job.ref.plugin] = _commit(
                flow_name, options, job, rows, checksums, stats, records, offsets
            )
    return [results[job.ref.plugin] for job in jobs]


def _commit(
    flow_name: str,
    options: ExportRef,
    job: _Pending,
    rows: dict[str, int],
    checksums: dict[str, str],
    stats: CurationStats,
    records: int,
    offsets: dict[str, dict[str, int]],
) -> ExportResult:
    """Commit one format's new version with its manifest (the caller holds the lock)."""
    name, fmt = job.ref.plugin, job.fmt
    manifest = {
        "flow": flow_name,
        "format": name,
        "options": job.ref.options,
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
    number, final = job.writer.commit_held(manifest)
    log.info(
        "%s/%s: wrote v%d (%s) to %s",
        flow_name,
        name,
        number,
        ", ".join(f"{split} {n} rows" for split, n in rows.items()),
        final,
    )
    return ExportResult(flow_name, name, number, final, rows, True)
