"""What a format's next version reads: the buckets that changed since its latest version.

A format line's latest version can lend its shards and its per-bucket counts to the next one
when the store's state describes that very version (`LineState.version`), the version was made
the same way (its manifest's `fingerprint`: the format, its options and schema, the flow's
split, template and judge, how shards are cut) and with the same bucket count. Then only the
buckets with a changed record are read; otherwise every bucket is. The formats of one export
that share a bucket count are read in one pass (`write_group`), over the union of what they
need: a bucket read for one format is rewritten for all (the same rows give the same shard).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.exporter.bucket_pass import write_buckets
from services.exporter.buckets import choose_buckets
from services.exporter.formats.base import Format
from services.exporter.record_pass import workers_for
from services.exporter.stats import CurationStats
from services.exporter.storage import VersionStorage, json_bytes
from services.exporter.store import ExportStore, LineState
from services.exporter.versions import VersionWriter
from shared.flows import Flow, PluginRef
from shared.plugins import PluginRegistry
from shared.settings import Settings

log = logging.getLogger("loopline.exporter")

# Bumped when the rows or counts made from the same records change: a format's next version is
# then made from every record again, not from its changed buckets only.
ROWS_VERSION = 1


@dataclass
class Line:
    """One format's next version being written: what it builds on, and its writer."""

    ref: PluginRef
    fmt: Format
    storage: VersionStorage
    writer: VersionWriter
    pending: int  # the store's count of changed records, when the export began
    buckets: int
    fingerprint: str
    base: dict[str, Any] | None  # the latest version's manifest when the export began
    state: LineState
    changed: list[int] | None  # the buckets to read; None: every bucket
    kept: dict[int, CurationStats]  # the stored counts of the buckets not to read
    rewritten: list[int] | None = None  # the buckets read; None: every bucket
    read: dict[int, CurationStats] = field(default_factory=dict)  # the counts of those read

    @property
    def base_version(self) -> int:
        return int(self.base["version"]) if self.base is not None else 0

    def stats(self) -> dict[int, CurationStats]:
        """Every bucket's counts: those read, and those kept for the others."""
        return {**self.kept, **self.read}


def fingerprint(flow: Flow, ref: PluginRef, fmt: Format, settings: Settings) -> str:
    """What a format's rows depend on besides the records (see the module's docstring)."""
    made_by = {
        "rows_version": ROWS_VERSION,
        "format": ref.plugin,
        "options": ref.options,
        "schema": {split: fmt.features(split).to_dict() for split in fmt.splits},
        "split": {"test_size": flow.export.test_size, "seed": flow.export.split_seed},
        "template": flow.publish.model_dump(mode="json") if flow.publish else None,
        "judge": flow.judge.model_dump(mode="json") if flow.judge else None,
        "batch_rows": settings.export.batch_rows,
        "shard_rows": settings.export.shard_rows,
    }
    return hashlib.sha256(json_bytes(made_by)).hexdigest()[:16]


def plan_line(
    settings: Settings,
    flow: Flow,
    ref: PluginRef,
    fmt: Format,
    storage: VersionStorage,
    store: ExportStore,
) -> Line:
    """A format's next version: its bucket count (its latest version's, or chosen now) and
    the buckets it must read."""
    base = storage.latest_manifest()
    buckets = int(base["buckets"]) if base is not None and "buckets" in base else 0
    if not buckets:
        export = settings.export
        buckets = choose_buckets(store.count(), export.expected_records, export.buckets)
    store.track(ref.plugin, buckets)
    state = store.line(ref.plugin)
    assert state is not None, "tracked just now"
    code = fingerprint(flow, ref, fmt, settings)
    changed, kept = _changes(ref.plugin, base, code, buckets, state)
    writer = VersionWriter(
        storage,
        {split: fmt.features(split) for split in fmt.splits},
        batch_rows=settings.export.batch_rows,
        shard_rows=settings.export.shard_rows,
    )
    pending = store.pending(ref.plugin)
    return Line(ref, fmt, storage, writer, pending, buckets, code, base, state, changed, kept)


def _changes(
    name: str, base: dict[str, Any] | None, code: str, buckets: int, state: LineState
) -> tuple[list[int] | None, dict[int, CurationStats]]:
    """The buckets changed since `base` and the stored counts of the others; (None, {}) when
    the store cannot tell (every bucket is read)."""
    if (
        base is None
        or "shards" not in base
        or base.get("fingerprint") != code
        or int(base.get("buckets", 0)) != buckets
        or state.version != int(base["version"])
    ):
        return None, {}
    changed = set(state.changed)
    try:
        kept = {
            bucket: CurationStats.from_bytes(blob)
            for bucket, blob in state.stats.items()
            if bucket not in changed
        }
    except Exception as exc:  # counts of another version, or damaged: count again
        log.warning("%s: stored counts not usable (%s): reading every record", name, exc)
        return None, {}
    return state.changed, kept


def write_group(
    settings: Settings,
    flow: Flow,
    group: list[Line],
    store: ExportStore,
    registry: PluginRegistry | None,
    on_records: Callable[[int], None] | None,
) -> None:
    """One pass over the buckets the formats of `group` (one bucket count) need."""
    buckets = group[0].buckets
    if any(line.changed is None for line in group):
        which = list(range(buckets))
    else:
        which = sorted({bucket for line in group for bucket in line.changed or []})
    every = len(which) == buckets
    records = store.count() if every else store.count_buckets(buckets, which)
    stats = write_buckets(
        flow,
        [line.ref for line in group],
        [line.writer for line in group],
        store,
        buckets,
        which,
        settings.export.batch_rows,
        workers_for(settings.export, records),
        registry,
        on_records,
    )
    for line in group:
        line.rewritten = None if every else which
        line.kept = {} if every else {b: s for b, s in line.kept.items() if b not in which}
        line.read = stats
