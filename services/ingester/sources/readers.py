"""Reading rows from dataset files and folders: format detection, streaming, row counts.

The batch importer streams a source with `iter_rows`: a row this module cannot parse comes back
as a `Row` with `error` set, so the importer can report it by `Row.number` and go on. Turning a
row into a record is `services.ingester.sources.mapping`.

Sources are read as streams, never whole: JSON Lines line by line, CSV with `csv.DictReader`,
Parquet one record batch at a time and `datasets` folders (memory-mapped Arrow) in batches.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "datasets")

_SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".jsonlines": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # JSON Lines saved as .json; a JSON array is refused with a hint
    ".csv": "csv",
    ".tsv": "csv",  # read with a tab delimiter
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SUPPORTED = (
    "jsonl (.jsonl, .jsonlines, .ndjson, .json with one object per line), "
    "csv (.csv, .tsv), parquet (.parquet, .pq), "
    "datasets (a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk)"
)
# Files a `save_to_disk` folder holds: a Dataset writes the first two, a DatasetDict the third.
_DATASET_MARKERS = ("state.json", "dataset_info.json")
_DATASET_DICT_MARKER = "dataset_dict.json"

BATCH_SIZE = 1_000  # rows per Parquet / datasets batch
_READ_CHUNK = 1 << 20


class SourceError(ValueError):
    """The source cannot be read at all: a missing path, an unknown format, a broken file."""


@dataclass(frozen=True)
class Row:
    """One row of a source: its data, or why it could not be parsed.

    `number` is the 1-based line number for JSON Lines, the 1-based data row number for CSV
    (the header is not counted) and the 1-based row index for Parquet and `datasets` (running
    on across the splits of a DatasetDict read whole).
    """

    number: int
    data: dict[str, Any] | None
    error: str | None = None


def detect_format(path: Path) -> str:
    """The format of `path`: "jsonl", "csv", "parquet" or "datasets"."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / _DATASET_DICT_MARKER).is_file() or any(
            (path / marker).is_file() for marker in _DATASET_MARKERS
        ):
            return "datasets"
        raise SourceError(
            f"{path}: a folder that is not a `datasets` save_to_disk folder (no "
            f"{_DATASET_DICT_MARKER}, {' or '.join(_DATASET_MARKERS)}); supported: {_SUPPORTED}"
        )
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; supported: {_SUPPORTED}"
        )
    return fmt


def iter_rows(path: Path, fmt: str | None = None, split: str | None = None) -> Iterator[Row]:
    """Stream the rows of `path` (format detected unless `fmt` is given).

    `split` picks one split of a DatasetDict folder; without it every split is read in order.
    Problems with the source as a whole raise `SourceError` at the call, not at the first row.
    """
    path = Path(path)
    fmt = _resolve(path, fmt, split)
    if fmt == "jsonl":
        _refuse_json_array(path)
        return _iter_jsonl(path)
    if fmt == "csv":
        return _iter_csv(path)
    if fmt == "parquet":
        _parquet_metadata(path)  # fail now on a file that is not Parquet
        return _iter_parquet(path)
    return _iter_datasets(_load_splits(path, split))


def count_rows(path: Path, fmt: str | None = None, split: str | None = None) -> int | None:
    """How many rows `iter_rows` yields for the same arguments, or None when not cheaply known.

    Parquet and `datasets` read it from their metadata; JSON Lines and CSV take one pass over
    the file without building rows (a CSV pass, so quoted fields spanning lines count once).
    """
    path = Path(path)
    fmt = _resolve(path, fmt, split)
    if fmt == "jsonl":
        _refuse_json_array(path)
        return _count_jsonl(path)
    if fmt == "csv":
        return _count_csv(path)
    if fmt == "parquet":
        rows = _parquet_metadata(path).num_rows
        return int(rows) if rows is not None else None
    return sum(len(dataset) for _, dataset in _load_splits(path, split))


def _resolve(path: Path, fmt: str | None, split: str | None) -> str:
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise SourceError(f"{path}: unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    elif not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if fmt == "datasets" and not path.is_dir():
        raise SourceError(f"{path}: a `datasets` source must be a save_to_disk folder")
    if fmt != "datasets" and path.is_dir():
        raise SourceError(f"{path}: is a folder, not a {fmt} file")
    if split is not None and fmt != "datasets":
        raise SourceError(f"{path}: a split can only be chosen in a `datasets` folder, not {fmt}")
    return fmt


# JSON Lines


def _refuse_json_array(path: Path) -> None:
    """A `.json` file holding one JSON array cannot be streamed line by line: say so."""
    if path.suffix.lower() != ".json":
        return
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        raise SourceError(
            f"{path}: a JSON array, not JSON Lines; convert it to one object per line "
            "(e.g. `jq -c '.[]' in.json > out.jsonl`)"
        )


def _iter_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Row(number, None, f"not valid UTF-8: {exc.reason} at byte {exc.start}")
                continue
            except json.JSONDecodeError as exc:
                yield Row(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield Row(number, None, f"expected a JSON object, got {_json_kind(value)}")
                continue
            yield Row(number, value, None)


def _count_jsonl(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip() and raw.strip() != b"\xef\xbb\xbf")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# CSV


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB by default; long documents are normal here.
    limit = sys.maxsize
    while True:
        try:
            if csv.field_size_limit() < limit:
                csv.field_size_limit(limit)
            return
        except OverflowError:  # a C long smaller than sys.maxsize (Windows)
            limit //= 2


def _open_csv(path: Path) -> Any:
    return path.open(encoding="utf-8-sig", newline="")


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _iter_csv(path: Path) -> Iterator[Row]:
    _allow_long_csv_fields()
    with _open_csv(path) as f:
        reader = csv.DictReader(f, delimiter=_delimiter(path), restkey=_EXTRA)
        number = 0
        while True:
            try:
                data = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield Row(number, None, f"invalid CSV: {exc}")
                continue
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path}: not valid UTF-8 after data row {number}: {exc.reason}"
                ) from exc
            number += 1
            extra = data.pop(_EXTRA, None)
            if extra is not None:
                yield Row(
                    number,
                    None,
                    f"{len(reader.fieldnames or ()) + len(extra)} fields, "
                    f"the header has {len(reader.fieldnames or ())}",
                )
                continue
            yield Row(number, data, None)


_EXTRA = "\x00extra"  # DictReader's key for fields beyond the header's


def _count_csv(path: Path) -> int:
    _allow_long_csv_fields()
    rows = 0
    with _open_csv(path) as f:
        reader = csv.reader(f, delimiter=_delimiter(path))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                rows += 1
                continue
            except UnicodeDecodeError as exc:
                raise SourceError(f"{path}: not valid UTF-8: {exc.reason}") from exc
            if row:  # DictReader skips blank lines too
                rows += 1
    return max(rows - 1, 0)  # the header


# Parquet


def _parquet_metadata(path: Path) -> Any:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from exc


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    parquet = pq.ParquetFile(path)
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_SIZE):
            for data in batch.to_pylist():
                number += 1
                yield Row(number, data, None)
    finally:
        parquet.close()


# datasets folders


def _load_splits(path: Path, split: str | None) -> list[tuple[str | None, Any]]:
    """The (split name, Dataset) pairs to read, in order."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable `datasets` folder: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        if split is None:
            return [(name, loaded[name]) for name in names]
        if split not in loaded:
            raise SourceError(
                f"{path}: no split {split!r}; the splits are: {', '.join(names) or '(none)'}"
            )
        return [(split, loaded[split])]
    own = None if loaded.split is None else str(loaded.split)
    if split is not None and split != own:
        raise SourceError(
            f"{path}: a single dataset without splits; no split {split!r} to choose "
            "(leave the split out)"
        )
    return [(own, loaded)]


def _iter_datasets(splits: list[tuple[str | None, Any]]) -> Iterator[Row]:
    number = 0
    for _, dataset in splits:
        columns = list(dataset.column_names)
        for batch in dataset.iter(batch_size=BATCH_SIZE):
            for values in zip(*(batch[c] for c in columns), strict=True):
                number += 1
                yield Row(number, dict(zip(columns, values, strict=True)), None)
