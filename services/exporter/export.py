"""What the exporter keeps from the topics, and how one version of one format is made.

`accept` turns a consumed `records.completed` or `records.judged` message into the event the
flow's store keeps (or None: the flow exports nothing, or the judged record is not accepted
without people). With `publish.when`, the judged records that `shared.review` does not send to
people are auto-accepted, stored with their decision on `Record.review`. `export_versions`
streams the store's rows, bucket by bucket (`bucket_pass`), once, through aggregation and each
format plugin into a new version per format: its shards, manifest and curation report; when a
format's data came out the same as its latest version's, no version is made.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.exporter.aggregate import auto_accepts
from services.exporter.bucket_pass import merge_buckets
from services.exporter.formats.base import Row
from services.exporter.manifests import Shards, checksums, merged, shards_json, shards_of
from services.exporter.plan import Line, plan_line, write_group
from services.exporter.record_pass import load_formats
from services.exporter.report import write_report
from services.exporter.retention import Retention, apply_retention
from services.exporter.stats import CurationStats
from services.exporter.storage import Location, join, versions_locked, versions_of
from services.exporter.store import AUTO, HUMAN, ExportStore, StoredEvent
from services.exporter.versions import rows_table
from shared.events import (
    RECORDS_COMPLETED,
    RECORDS_JUDGED,
    CompletedRecord,
    DatasetExported,
    Record,
    read_event,
)
from shared.failures import TransientError
from shared.flows import AutoAccept, ExportRef, Flow, FlowsConfig, PluginRef
from shared.plugins import PluginRegistry
from shared.review import review
from shared.settings import KafkaSettings, Settings

log = logging.getLogger("loopline.exporter")

REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
# Exports tried when another export of the flow published a version of the same format while
# one ran (it built on what is no longer the latest): then it starts over from the new one.
ATTEMPTS = 3

CONSUMES = (RECORDS_COMPLETED, RECORDS_JUDGED)


class UnknownFlowError(ValueError):
    """A message names a flow that is not in the flow file."""


class LatestMovedError(RuntimeError):
    """Another export published a version of a format while this one built on the one before."""


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
    records_read: int = 0  # the records this export read for the format (its changed buckets)
    # The shards of the new version its previous version did not list (paths relative to the
    # format's directory): what publishing it added.
    written: tuple[str, ...] = ()

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
    the buckets that changed since its latest version (`plan`; every bucket for a format's
    first version): each record read is aggregated once and fed to every format."""
    formats = load_formats(refs, registry or PluginRegistry())
    storages = [versions_of(settings, flow_name, ref.plugin) for ref in refs]
    for ref, storage in zip(refs, storages, strict=True):
        # What is there before this export was announced (see `unannounced`).
        there = storage.numbers()
        store.start_announcing(ref.plugin, there[-1] if there else 0)
    for attempt in range(1, ATTEMPTS + 1):
        lines: list[Line] = []
        try:
            for ref, fmt, storage in zip(refs, formats, storages, strict=True):
                lines.append(plan_line(settings, flow, ref, fmt, storage, store))
            for buckets in sorted({line.buckets for line in lines}):
                group = [line for line in lines if line.buckets == buckets]
                write_group(settings, flow, group, store, registry, on_records)
            retention = Retention.of(settings.export)
            results = _finish(flow_name, flow.export, lines, store, retention)
        except LatestMovedError as exc:
            for line in lines:
                line.writer.abort()
            if attempt == ATTEMPTS:
                raise TransientError(f"exporting {flow_name}: {exc}") from exc
            log.info("%s: %s; exporting again from it", flow_name, exc)
            continue
        except BaseException:
            for line in lines:
                line.writer.abort()
            raise
        for line in lines:
            store.mark_exported(line.ref.plugin, line.pending)
        return results
    raise AssertionError("unreachable")


def _finish(
    flow_name: str,
    options: ExportRef,
    lines: list[Line],
    store: ExportStore,
    retention: Retention,
) -> list[ExportResult]:
    """Close each format's data and commit it as a new version unless it has no rows or
    equals the latest.

    Whether it equals the latest is decided under the formats' version lock, held until the
    new versions are committed: another export of the flow finishing meanwhile (`loopline
    export` beside the service) cannot make the same data a second version, nor leave an
    older version the latest. The curation report describes the records, not a format (rows
    per split are in the manifest): it is drawn once per pass and copied into every new
    version. The store learns, under the lock too, which version each format line's state now
    describes (`ExportStore.exported`). Then each format's card is brought up to date and its
    retention applied (`retention`), still under the lock.
    """
    offsets = store.offsets()
    closed: list[tuple[Line, CurationStats, Shards, Shards]] = []
    for line in lines:
        stats = merge_buckets(line.stats())
        summary: dict[str, list[Row]] = {}
        for split, out in line.fmt.summary_rows(stats):
            summary.setdefault(split, []).append(out)
        for split, made in summary.items():
            line.writer.add(split, rows_table(made, line.fmt.features(split)), None)
        new = line.writer.close_data()
        base = shards_of(line.base) if line.base is not None else {}
        closed.append((line, stats, new, merged(base, new, line.rewritten)))
    results: dict[str, ExportResult] = {}
    with versions_locked([line.storage for line in lines]):
        previous = {line.ref.plugin: line.storage.latest_manifest() for line in lines}
        for line in lines:
            now = previous[line.ref.plugin]
            number = int(now["version"]) if now is not None else 0
            if number != line.base_version:
                raise LatestMovedError(f"{line.ref.plugin} v{number} was published meanwhile")
        changed: list[tuple[Line, CurationStats, Shards, Shards]] = []
        for line, stats, new, shards in closed:
            name, storage = line.ref.plugin, line.storage
            rows = {split: sum(s.rows for s in shards.get(split, [])) for split in line.fmt.splits}
            latest = previous[name]
            read = sum(s.records for s in line.read.values())
            if not any(rows.values()):  # nothing to train on, nothing `load_dataset` can read
                line.writer.abort()
                log.warning("%s/%s: no rows, no version written", flow_name, name)
                results[name] = ExportResult(
                    flow_name, name, 0, storage.location(), rows, False, read
                )
                _note(store, line, 0)
            elif latest is not None and latest.get("checksums") == checksums(shards):
                line.writer.abort()
                number = int(latest["version"])
                log.info("%s/%s: unchanged since v%d, no new version", flow_name, name, number)
                where = storage.location(number)
                results[name] = ExportResult(flow_name, name, number, where, rows, False, read)
                _note(store, line, number)
            else:
                changed.append((line, stats, new, shards))
        if changed:
            # Only what describes the records: the same report whichever formats share it.
            stats = changed[0][1]
            first = changed[0][0].writer.path
            title = f"{flow_name}: curation of {stats.records} records"
            write_report(stats.report(title, {"records": stats.records}), first)
            for line, _, _, _ in changed[1:]:
                shutil.copy2(first / REPORT_FILE, line.writer.path / REPORT_FILE)
                shutil.copytree(first / PLOTS_DIR, line.writer.path / PLOTS_DIR)
        for line, stats, new, shards in changed:
            result = _commit(flow_name, options, line, stats, new, shards, offsets)
            results[line.ref.plugin] = result
            _note(store, line, result.version)
        for line in lines:
            line.storage.refresh_card()
            apply_retention(line.storage, retention)
    return [results[line.ref.plugin] for line in lines]


def _note(store: ExportStore, line: Line, version: int) -> None:
    """The format line's state now describes `version` (0: none), made from the changes the
    export planned with and the counts of the buckets it read."""
    counts = {bucket: stats.to_bytes() for bucket, stats in line.read.items()}
    store.exported(line.ref.plugin, version, line.state.seq, counts, line.rewritten is None)


def _commit(
    flow_name: str,
    options: ExportRef,
    line: Line,
    stats: CurationStats,
    new: Shards,
    shards: Shards,
    offsets: dict[str, dict[str, int]],
) -> ExportResult:
    """Commit one format's new version with its manifest (the caller holds the lock)."""
    name, fmt = line.ref.plugin, line.fmt
    rows = {split: sum(s.rows for s in shards.get(split, [])) for split in fmt.splits}
    manifest = {
        "flow": flow_name,
        "format": name,
        "options": line.ref.options,
        "rows": rows,
        "records": stats.records,
        "statuses": dict(sorted(stats.statuses.items())),
        "disagreements": stats.disagreements,
        "time_range": {"first": stats.first_time, "last": stats.last_time},
        "source_offsets": offsets,
        "split": {"test_size": options.test_size, "seed": options.split_seed},
        "schema": {split: fmt.features(split).to_dict() for split in fmt.splits},
        "buckets": line.buckets,
        "fingerprint": line.fingerprint,
        "shards": shards_json(shards),
        "checksums": checksums(shards),
    }
    number, final = line.writer.commit_held(manifest)
    log.info(
        "%s/%s: wrote v%d (%s) to %s",
        flow_name,
        name,
        number,
        ", ".join(f"{split} {n} rows" for split, n in rows.items()),
        final,
    )
    before = set(line.base.get("checksums") or {}) if line.base is not None else set()
    written = tuple(s.path for entries in new.values() for s in entries if s.path not in before)
    read = sum(s.records for s in line.read.values())
    return ExportResult(flow_name, name, number, final, rows, True, read, written)
