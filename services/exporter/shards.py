"""Shards: the Parquet files a format's rows live in, one per (split, bucket), named by content.

A shard holds the rows of one bucket of one split (`buckets`), in record_id order, or a table
computed over all records (`summary_rows`, e.g. `eval`'s win rates: bucket None). It is
written under a temporary name and renamed, once closed, to
`shards/<split>/b<bucket>-<sha256 prefix>.parquet` (`all-<...>` for a summary table): the same
rows give the same bytes and so the same name, which is how versions share a shard without
copying it. A shard with more than `shard_rows` rows is cut into several files, in order.

Rows come as Arrow tables and are held until `batch_rows` have come, then written together
(one Parquet row group), so memory does not depend on the number of rows.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features

SHARDS_DIR = "shards"
NAME_HASH = 32  # hex digits of the content's sha256 in a shard's name


@dataclass(frozen=True)
class Shard:
    """One Parquet file of a version, as its manifest lists it."""

    path: str  # relative to the format's directory: shards/<split>/<name>
    sha256: str
    rows: int
    bytes: int
    bucket: int | None  # None: a table computed over all records

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "rows": self.rows,
            "bytes": self.bytes,
        }
        if self.bucket is not None:
            found["bucket"] = self.bucket
        return found

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Shard:
        bucket = value.get("bucket")
        return cls(
            path=str(value["path"]),
            sha256=str(value["sha256"]),
            rows=int(value["rows"]),
            bytes=int(value["bytes"]),
            bucket=None if bucket is None else int(bucket),
        )


def shard_name(bucket: int | None, digest: str) -> str:
    prefix = "all" if bucket is None else f"b{bucket:05d}"
    return f"{prefix}-{digest[:NAME_HASH]}.parquet"


class ShardWriter:
    """The rows of one (split, bucket) into Parquet files under `<root>/shards/<split>/`."""

    def __init__(
        self,
        root: Path,
        split: str,
        features: Features,
        bucket: int | None,
        batch_rows: int,
        shard_rows: int,
    ) -> None:
        self.folder = root / SHARDS_DIR / split
        self.folder.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.schema = features.arrow_schema
        self.bucket = bucket
        self.batch_rows = batch_rows
        self.shard_rows = shard_rows
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._parts: list[tuple[Path, int]] = []  # (temporary file, rows)
        self._parquet: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        if table.schema != self.schema:
            raise ValueError(f"{self.split}: rows with schema {table.schema}, not {self.schema}")
        self._held.append(table)
        self._held_rows += table.num_rows
        if self._held_rows >= self.batch_rows:
            self._flush()

    def pending(self) -> int:
        return sum(rows for _, rows in self._parts) + self._held_rows

    def _flush(self) -> None:
        if not self._held_rows:
            return
        table = pa.concat_tables(self._held)
        self._held, self._held_rows = [], 0
        start = 0
        while start < table.num_rows:
            if self._parquet is None or self._parts[-1][1] >= self.shard_rows:
                self._open_part()
            path, rows = self._parts[-1]
            part = table.slice(start, min(table.num_rows - start, self.shard_rows - rows))
            assert self._parquet is not None
            self._parquet.write_table(part)
            self._parts[-1] = (path, rows + part.num_rows)
            start += part.num_rows

    def _open_part(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        which = "all" if self.bucket is None else str(self.bucket)
        path = self.folder / f".part-{which}-{len(self._parts)}.parquet"
        self._parquet = pq.ParquetWriter(path, self.schema)
        self._parts.append((path, 0))

    def close(self) -> list[Shard]:
        """Write what is left and give each file its name; the shards, in order."""
        self._flush()
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        found: list[Shard] = []
        for path, rows in self._parts:
            digest = file_sha256(path)
            final = self.folder / shard_name(self.bucket, digest)
            size = path.stat().st_size
            os.rename(path, final)
            relative = f"{SHARDS_DIR}/{self.split}/{final.name}"
            found.append(Shard(relative, digest, rows, size, self.bucket))
        self._parts = []
        return found

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
