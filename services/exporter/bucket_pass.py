"""One export pass over some buckets of a flow's records, into the shards of several formats.

The store gives each bucket's records in record_id order, in batches (`ExportStore.
bucket_batches`); `record_pass.run_pass` turns each batch into every format's rows (here or in
worker processes, in order), and each format's `VersionWriter` writes them as that bucket's
shards. Each bucket's counts for the curation report (`CurationStats`) are kept apart, so that
whole-dataset figures are the merge of per-bucket ones (`merge_buckets`), always in bucket
order: the same records give the same figures, whichever buckets a pass read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence

from services.exporter.record_pass import run_pass
from services.exporter.stats import CurationStats
from services.exporter.store import ExportStore, RawRow
from services.exporter.versions import VersionWriter
from shared.flows import Flow, PluginRef
from shared.plugins import PluginRegistry


def write_buckets(
    flow: Flow,
    refs: Sequence[PluginRef],
    writers: Sequence[VersionWriter],
    store: ExportStore,
    buckets: int,
    which: Sequence[int],
    batch_rows: int,
    workers: int = 1,
    registry: PluginRegistry | None = None,
    on_records: Callable[[int], None] | None = None,
) -> dict[int, CurationStats]:
    """Write the rows of the buckets `which` (of `buckets`) of every format in `refs` with
    its writer; each bucket's counts (a bucket without records has none)."""
    order: deque[int] = deque()  # the bucket of each batch handed to the pass, in order

    def batches() -> Iterator[list[RawRow]]:
        for bucket, rows in store.bucket_batches(buckets, which, batch_rows):
            order.append(bucket)
            yield rows

    found: dict[int, CurationStats] = {}
    current: int | None = None
    for chunk in run_pass(flow, refs, batches(), workers, registry):
        bucket = order.popleft()
        if bucket != current:
            for writer in writers:
                writer.end_bucket()
            current = bucket
        for writer, tables in zip(writers, chunk.tables, strict=True):
            for split, table in tables.items():
                writer.add(split, table, bucket)
        if bucket in found:
            found[bucket].merge(chunk.stats)
        else:
            found[bucket] = chunk.stats
        if on_records is not None:
            on_records(chunk.records)
    for writer in writers:
        writer.end_bucket()
    return found


def merge_buckets(by_bucket: Mapping[int, CurationStats]) -> CurationStats:
    """The counts of all records: every bucket's, merged in bucket order."""
    total = CurationStats({})
    for bucket in sorted(by_bucket):
        total.merge(by_bucket[bucket])
    return total
