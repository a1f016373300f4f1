"""Numbered dataset versions, written atomically and reproducibly.

A version is a directory `<export dir>/<flow>/<format>/v<N>/` (a prefix of a URL export
directory: `storage`) holding:

* `data/<split>-00000-of-00002.parquet`, ...: Parquet shards of every split with rows
  (`load_dataset("parquet", data_dir=...)`); a split without rows has none, since `datasets`
  cannot load an empty split;
* `README.md`: a dataset card whose `configs:` section says which files make which split of
  which configuration, as on the Hub (`load_dataset(<version dir>[, config])`): the splits
  `train`, `validation` and `test` form the `default` configuration; any other split is a
  table of its own (`eval`'s `scores` and `win_rates`): a configuration named after it, whose
  one split is `train`. Splits without rows are left out, and so is a configuration without;
* `dataset_dict.json` and `<split>/`: the same rows as a `datasets` DatasetDict saved to disk
  (Arrow files, `datasets.load_from_disk(...)`), every split, empty ones included;
* `manifest.json`: counts, flow, format, time range, source topic offsets, schema, checksums;
* `report.html` and `plots/`: the curation report.

Rows come as Arrow tables and go to disk in batches through one Parquet and one Arrow writer
per shard, so memory does not depend on the number of rows. Everything is written in a local
staging directory and published at the end (`storage`: renamed into place in a local export
directory, uploaded with its manifest last to a URL), under a lock that is held from the check
that the data differs from the latest version's to the choice of the number, so a crash never
leaves a half-written version visible and two exports at once never make the same data twice;
leftovers of crashed writers are removed by the next export. Nothing in a version depends on
the clock: the same rows give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import DatasetInfo, Features

from services.exporter.storage import LocalVersions, Location, VersionStorage, json_bytes

CARD = "README.md"
# Split names `datasets` knows: they make up one configuration; any other split is a table.
SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_CONFIG = "default"


def versions(format_dir: Path) -> list[int]:
    """The version numbers in a local format directory, ascending."""
    return LocalVersions(format_dir).numbers()


class _SplitWriter:
    """One split's rows, as Arrow tables, into Parquet and Arrow shard files at once.

    Tables are held until `batch_rows` rows have come, then written together (one Parquet row
    group); a shard holds at most `shard_rows` rows. Shards are named
    `<split>-00000-of-00003-<sha256 prefix>.parquet` and `data-00000-of-00003.arrow`; the
    total and the Parquet file's hash are known at the end, when they are renamed. The hash
    makes the card's file list unique to the content: `datasets` caches a local directory by
    its name (`v1`) and its card, so two versions with the same card would share a cache
    entry. A split without rows gets one empty Arrow shard (what `load_from_disk` expects)
    and no Parquet file (which `load_dataset` could not read).
    """

    def __init__(
        self, root: Path, split: str, features: Features, batch_rows: int, shard_rows: int
    ) -> None:
        self.root = root
        self.split = split
        self.schema = features.arrow_schema
        self.batch_rows = batch_rows
        self.shard_rows = shard_rows
        self.rows = 0
        self.parquet_names: list[str] = []
        self.arrow_names: list[str] = []
        self.checksums: dict[str, str] = {}  # final Parquet name → sha256
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._in_shard = 0
        self._parquet: pq.ParquetWriter | None = None
        (root / "data").mkdir(exist_ok=True)
        (root / split).mkdir()
        self._open_shard()

    def _open_shard(self) -> None:
        k = len(self.arrow_names)
        self.arrow_names.append(f"{self.split}/data-{k:05d}.arrow")
        self._arrow_sink = pa.OSFile(str(self.root / self.arrow_names[-1]), "wb")
        self._arrow = pa.ipc.new_stream(self._arrow_sink, self.schema)
        self._parquet = None  # opened with the shard's first rows
        self._in_shard = 0

    def _write(self, part: pa.Table) -> None:
        if self._parquet is None:
            self.parquet_names.append(f"data/{self.split}-{len(self.arrow_names) - 1:05d}.parquet")
            self._parquet = pq.ParquetWriter(self.root / self.parquet_names[-1], self.schema)
        self._parquet.write_table(part)
        self._arrow.write_table(part)

    def _close_shard(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        self._arrow.close()
        self._arrow_sink.close()

    def add(self, table: pa.Table) -> None:
        if table.schema != self.schema:
            raise ValueError(f"{self.split}: rows with schema {table.schema}, not {self.schema}")
        self._held.append(table)
        self._held_rows += table.num_rows
        if self._held_rows >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._held_rows:
            return
        table = pa.concat_tables(self._held)
        self._held, self._held_rows = [], 0
        start = 0
        while start < table.num_rows:
            if self._in_shard >= self.shard_rows:
                self._close_shard()
                self._open_shard()
            part = table.slice(start, min(table.num_rows - start, self.shard_rows - self._in_shard))
            self._write(part)
            self._in_shard += part.num_rows
            self.rows += part.num_rows
            start += part.num_rows

    def pending(self) -> int:
        return self.rows + self._held_rows

    def close(self) -> None:
        """Write what is left and give the shards their final names."""
        self._flush()
        self._close_shard()
        for k, name in enumerate(self.parquet_names):
            digest = _sha256(self.root / name)
            final = name.replace(
                f"-{k:05d}.", f"-{k:05d}-of-{len(self.parquet_names):05d}-{digest[:16]}."
            )
            os.rename(self.root / name, self.root / final)
            self.parquet_names[k] = final
            self.checksums[final] = digest
        for k, name in enumerate(self.arrow_names):
            final = name.replace(f"-{k:05d}.", f"-{k:05d}-of-{len(self.arrow_names):05d}.")
            os.rename(self.root / name, self.root / final)
            self.arrow_names[k] = final


class VersionWriter:
    """Writes one new version of a flow's format; `commit_held` makes it visible, atomically."""

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
        self._splits = {
            name: _SplitWriter(self.tmp, name, features, batch_rows, shard_rows)
            for name, features in splits.items()
        }

    def add(self, split: str, table: pa.Table) -> None:
        """Rows of `split`, as a table of its schema (see `rows_table`)."""
        self._splits[split].add(table)

    def counts(self) -> dict[str, int]:
        return {name: w.pending() for name, w in self._splits.items()}

    def close_data(self) -> dict[str, str]:
        """Finish the data files, the DatasetDict metadata and the dataset card; returns
        Parquet file → sha256."""
        for name, writer in self._splits.items():
            writer.close()
            split_dir = self.tmp / name
            DatasetInfo(features=self.features[name]).write_to_directory(str(split_dir))
            digest = hashlib.sha256()
            for arrow_name in writer.arrow_names:
                digest.update(_sha256(self.tmp / arrow_name).encode())
            state: dict[str, Any] = {
                "_data_files": [{"filename": Path(a).name} for a in writer.arrow_names],
                "_fingerprint": digest.hexdigest()[:16],
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": name,
            }
            (split_dir / "state.json").write_bytes(json_bytes(state))
        (self.tmp / "dataset_dict.json").write_bytes(json_bytes({"splits": list(self._splits)}))
        files = {name: writer.parquet_names for name, writer in self._splits.items()}
        (self.tmp / CARD).write_text(dataset_card(self.storage.name, files), encoding="utf-8")
        return {name: sha for w in self._splits.values() for name, sha in w.checksums.items()}

    @property
    def path(self) -> Path:
        """Where the version is being written, on local disk (for the report)."""
        return self.tmp

    def commit_held(self, manifest: dict[str, Any]) -> tuple[int, Location]:
        """Publish the version as the next `v<N>`, its manifest last; the caller holds the
        format's version lock (`storage.versions_locked`), under which it decided to."""
        return self.storage.publish(self.tmp, manifest)

    def abort(self) -> None:
        for writer in self._splits.values():
            with contextlib.suppress(Exception):
                writer.close()
        self.storage.discard(self.tmp)


def config_splits(splits: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per configuration, its splits as `datasets` names them → the version's split names
    (see the module's docstring): `train`, `validation` and `test` make up `default`; any
    other split is a table, a configuration of its own whose one split is `train`."""
    found: dict[str, dict[str, str]] = {}
    for split in splits:
        config, hub_split = (DEFAULT_CONFIG, split) if split in SPLIT_NAMES else (split, "train")
        found.setdefault(config, {})[hub_split] = split
    return found


def configs(files: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The card's `configs:` for each split's Parquet files; splits without files (no rows)
    are left out, and so is a configuration without any."""
    with_rows = [split for split, names in files.items() if names]
    return [
        {
            "config_name": config,
            "data_files": [
                {"split": hub_split, "path": list(files[split])}
                for hub_split, split in splits.items()
            ],
        }
        for config, splits in config_splits(with_rows).items()
    ]


def dataset_card(title: str, files: Mapping[str, Sequence[str]]) -> str:
    """The version's README.md: its configurations as YAML front matter, then how to load it."""
    found = configs(files)
    front = yaml.safe_dump({"configs": found}, sort_keys=False, allow_unicode=True)
    config_names = [c["config_name"] for c in found]
    if config_names == [DEFAULT_CONFIG]:
        loading = (
            'load_dataset("parquet", data_dir=path)  # or load_dataset(path): splits with rows\n'
        )
    else:
        loading = "".join(f'load_dataset(path, "{name}")["train"]\n' for name in config_names)
    empty = [split for split, names in files.items() if not names]
    note = (
        f"Without rows: {', '.join(empty)}, left out of the configurations above (`datasets` "
        "cannot load an empty split); `load_from_disk` has every split.\n\n"
        if empty
        else ""
    )
    return (
        f"---\n{front}---\n\n# {title}\n\nExported by Loopline; `manifest.json` has the "
        "rows per split, the source offsets, the schema and the checksums, `report.html` the "
        f"curation report.\n\n{note}"
        "```python\nfrom datasets import load_dataset, load_from_disk\n\n"
        'path = "<this directory>"\n'
        f"{loading}load_from_disk(path)  # the same rows, every split\n```\n"
    )


def card_configs(version_dir: Path) -> list[dict[str, Any]]:
    """The configurations a version's card declares."""
    text = (version_dir / CARD).read_text(encoding="utf-8")
    front: dict[str, Any] = yaml.safe_load(text.split("---\n", 2)[1])
    found: list[dict[str, Any]] = front["configs"]
    return found


def rows_table(rows: list[dict[str, Any]], features: Features) -> pa.Table:
    """Rows (dicts of the features' columns) as an Arrow table of the features' schema."""
    return pa.Table.from_pylist(rows, schema=features.arrow_schema)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
