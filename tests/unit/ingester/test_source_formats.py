"""Reading rows from JSON Lines, CSV and Parquet files and `datasets` folders: format detection,
numbered rows, bad rows reported and skipped over, streaming, splits and row counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from services.ingester.sources import readers
from services.ingester.sources.readers import Row, SourceError, count_rows, detect_format, iter_rows
from tests.unit.ingester.source_rows import DOLLY, ORCA, write_csv, write_jsonl


def test_detect_format_by_suffix_and_folder_markers(tmp_path: Path) -> None:
    for name, fmt in [
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "jsonl"),
        ("a.CSV", "csv"),
        ("a.parquet", "parquet"),
    ]:
        (tmp_path / name).write_text("")
        assert detect_format(tmp_path / name) == fmt
    datasets.Dataset.from_list([{"a": 1}]).save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"a": 1}])}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert detect_format(tmp_path / "single") == "datasets"
    assert detect_format(tmp_path / "dict") == "datasets"


def test_unknown_format_and_missing_path_are_source_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SourceError, match=r"notes\.txt.*unknown format.*jsonl.*csv.*parquet"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match=r"nowhere\.jsonl: no such file"):
        iter_rows(tmp_path / "nowhere.jsonl")  # raised at the call, before any row
    with pytest.raises(SourceError, match="no such file"):
        count_rows(tmp_path / "nowhere.jsonl")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="not a `datasets` save_to_disk folder"):
        detect_format(tmp_path / "plain")
    with pytest.raises(SourceError, match="unknown format 'xml'"):
        iter_rows(tmp_path / "notes.txt", fmt="xml")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        iter_rows(tmp_path / "broken.parquet")
    assert isinstance(SourceError("x"), ValueError)


def test_jsonl_bad_lines_are_reported_by_line_number_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "dolly.jsonl"
    path.write_text(
        json.dumps(DOLLY[0])
        + "\n"
        + '{"instruction": "broken\n'  # line 2: malformed
        + "\n"  # line 3: blank, skipped
        + '["not", "an", "object"]\n'  # line 4
        + json.dumps(DOLLY[1]),  # line 5, no final newline
        encoding="utf-8",
    )
    rows = list(iter_rows(path))
    assert [r.number for r in rows] == [1, 2, 4, 5]
    assert rows[0] == Row(1, DOLLY[0], None)
    assert rows[1].data is None and rows[1].error and "invalid JSON" in rows[1].error
    assert rows[2].data is None and rows[2].error == "expected a JSON object, got an array"
    assert rows[3].data == DOLLY[1] and rows[3].error is None
    assert count_rows(path) == 4  # the rows iter_rows yields, good or bad


def test_json_array_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(DOLLY, indent=2))
    with pytest.raises(SourceError, match="JSON array, not JSON Lines"):
        iter_rows(path)


def test_csv_rows_are_numbered_without_the_header(tmp_path: Path) -> None:
    rows_in = [*DOLLY, {**DOLLY[0], "response": "line one\nline two"}]
    path = write_csv(tmp_path / "dolly.csv", rows_in)
    rows = list(iter_rows(path))
    assert [r.number for r in rows] == [1, 2, 3]
    assert rows[0].data == DOLLY[0]
    assert rows[2].data is not None and rows[2].data["response"] == "line one\nline two"
    assert count_rows(path) == 3  # a quoted newline does not make a row


def test_csv_row_with_too_many_fields_is_an_error_row(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("prompt,completion\nhi,hello\na,b,c\nbye,see you\n", encoding="utf-8")
    rows = list(iter_rows(path))
    assert [(r.number, r.data) for r in rows] == [
        (1, {"prompt": "hi", "completion": "hello"}),
        (2, None),
        (3, {"prompt": "bye", "completion": "see you"}),
    ]
    assert rows[1].error == "3 fields, the header has 2"
    assert count_rows(path) == 3


def test_parquet_rows_and_count_from_metadata(tmp_path: Path) -> None:
    path = tmp_path / "orca.parquet"
    pq.write_table(pa.Table.from_pylist(ORCA), path)
    rows = list(iter_rows(path))
    assert [(r.number, r.data) for r in rows] == [(1, ORCA[0]), (2, ORCA[1])]
    assert count_rows(path) == 2


def test_parquet_is_streamed_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 20_000
    path = tmp_path / "big.parquet"
    table = pa.table(
        {"prompt": [f"p{i}" for i in range(n)], "completion": [str(i) for i in range(n)]}
    )
    pq.write_table(table, path, row_group_size=3_000)
    assert pq.ParquetFile(path).num_row_groups == 7

    batches: list[int] = []
    real_iter_batches = pq.ParquetFile.iter_batches

    def spying_iter_batches(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        for batch in real_iter_batches(self, *args, **kwargs):
            batches.append(batch.num_rows)
            yield batch

    def no_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole file was read at once")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spying_iter_batches)
    monkeypatch.setattr(pq.ParquetFile, "read", no_read)
    monkeypatch.setattr(pq, "read_table", no_read)

    rows = iter_rows(path)
    first = next(rows)
    assert first == Row(1, {"prompt": "p0", "completion": "0"}, None)
    assert batches == [readers.BATCH_SIZE]  # only the first batch has been read so far
    rest = list(rows)
    assert len(rest) + 1 == n == count_rows(path)
    assert [r.number for r in rest] == list(range(2, n + 1))
    assert [r.data["prompt"] for r in rest if r.data] == [f"p{i}" for i in range(1, n)]
    assert sum(batches) == n and max(batches) <= readers.BATCH_SIZE


def test_datasets_folder_single_dataset(tmp_path: Path) -> None:
    path = tmp_path / "dolly"
    datasets.Dataset.from_list(DOLLY).save_to_disk(str(path))
    assert [(r.number, r.data) for r in iter_rows(path)] == [(1, DOLLY[0]), (2, DOLLY[1])]
    assert count_rows(path) == 2
    with pytest.raises(SourceError, match="single dataset without splits"):
        iter_rows(path, split="train")


def test_datasets_folder_dataset_dict_splits(tmp_path: Path) -> None:
    path = tmp_path / "orca"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ORCA),
            "test": datasets.Dataset.from_list(ORCA[:1]),
        }
    ).save_to_disk(str(path))

    every = list(iter_rows(path))
    assert [r.number for r in every] == [1, 2, 3]  # numbering runs on across splits
    assert [r.data for r in every] == [ORCA[0], ORCA[1], ORCA[0]]  # no "split" key added
    assert count_rows(path) == 3

    test = list(iter_rows(path, split="test"))
    assert [(r.number, r.data) for r in test] == [(1, ORCA[0])]
    assert count_rows(path, split="test") == 1
    assert count_rows(path, split="train") == 2

    with pytest.raises(SourceError, match="no split 'validation'; the splits are: train, test"):
        iter_rows(path, split="validation")
    with pytest.raises(SourceError, match="no split"):
        count_rows(path, split="validation")


def test_split_only_applies_to_datasets_folders(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOLLY)
    with pytest.raises(SourceError, match="split can only be chosen"):
        iter_rows(path, split="train")
