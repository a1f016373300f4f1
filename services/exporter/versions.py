"""Numbered dataset versions over shared, content-addressed shards, written atomically.

A format's directory `<export dir>/<flow>/<format>/` (a prefix of a URL export directory:
`storage`) holds:

* `shards/<split>/b<bucket>-<sha256 prefix>.parquet`: the rows of one bucket of one split, in
  record_id order (`shards`); `all-<...>.parquet` for a table computed over all records
  (`eval`'s win rates). A shard is never changed once written: a version that did not change
  a bucket's rows lists the same file as the version before it;
* `v<N>/manifest.json`: version N, its shards per split with their checksums and rows
  (`manifests`), the bucket count, counts, flow, format, time range, source topic offsets,
  schema; and `v<N>/report.html` with `v<N>/plots/`: its curation report;
* `README.md`: the dataset card with every version as a configuration (`card`), so that
  `load_dataset(<format dir>, "v<N>")` loads one, here or on the Hub.

Rows come as Arrow tables, bucket after bucket, and go to disk in batches, so memory does not
depend on the number of rows. The new shards and the report are written in a local staging
directory and published at the end (`storage`: shards first, then the manifest, under the
format's lock), so a crash never leaves a half-written version visible; leftovers of crashed
writers are removed by the next export. Nothing in a version depends on the clock: the same
rows give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Features

from services.exporter.card import CARD, DEFAULT_CONFIG, SPLIT_NAMES, config_splits
from services.exporter.manifests import Shards
from services.exporter.shards import ShardWriter
from services.exporter.storage import LocalVersions, Location, VersionStorage

__all__ = [
    "CARD",
    "DEFAULT_CONFIG",
    "SPLIT_NAMES",
    "VersionWriter",
    "config_splits",
    "rows_table",
    "versions",
]


def versions(format_dir: Path) -> list[int]:
    """The version numbers in a local format directory, ascending."""
    return LocalVersions(format_dir).numbers()


class VersionWriter:
    """Writes the new shards of one flow's format, bucket after bucket, and its report in a
    staging directory; `commit_held` makes them a version, atomically."""

    def __init__(
        self,
        storage: VersionStorage,
        splits: Mapping[str, Features],
        batch_rows: int = 2000,
        shard_rows: int = 100_000,
    ) -> None:
        self.storage = storage
        self.tmp = storage.stage()
        self.features = dict(splits)
        self.batch_rows = batch_rows
        self.shard_rows = shard_rows
        self._open: dict[str, ShardWriter] = {}  # split -> the writer of its current bucket
        self.written: Shards = {}  # split -> the shards written, in order

    def add(self, split: str, table: pa.Table, bucket: int | None) -> None:
        """Rows of `split` in `bucket` (None: a table over all records), as a table of its
        schema (see `rows_table`); a bucket's rows come together, in record_id order."""
        writer = self._open.get(split)
        if writer is not None and writer.bucket != bucket:
            self._close(split)
            writer = None
        if writer is None:
            writer = ShardWriter(
                self.tmp, split, self.features[split], bucket, self.batch_rows, self.shard_rows
            )
            self._open[split] = writer
        writer.add(table)

    def end_bucket(self) -> None:
        """The bucket's rows are all there: close its shards."""
        for split in list(self._open):
            self._close(split)

    def _close(self, split: str) -> None:
        self.written.setdefault(split, []).extend(self._open.pop(split).close())

    def close_data(self) -> Shards:
        """Finish the data files; the shards written, per split."""
        self.end_bucket()
        return self.written

    @property
    def path(self) -> Path:
        """Where the version is being written, on local disk (for the report)."""
        return self.tmp

    def commit_held(self, manifest: dict[str, Any]) -> tuple[int, Location]:
        """Publish the version as the next `v<N>`, its manifest last; the caller holds the
        format's version lock (`storage.versions_locked`), under which it decided to."""
        return self.storage.publish(self.tmp, manifest)

    def abort(self) -> None:
        for writer in self._open.values():
            writer.abort()
        self._open = {}
        self.storage.discard(self.tmp)


def rows_table(rows: list[dict[str, Any]], features: Features) -> pa.Table:
    """Rows (dicts of the features' columns) as an Arrow table of the features' schema."""
    return pa.Table.from_pylist(rows, schema=features.arrow_schema)
