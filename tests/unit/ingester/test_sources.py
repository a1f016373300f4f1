"""Reading rows from files and `datasets` folders, and mapping columns to record fields."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from services.ingester.sources import readers
from services.ingester.sources.mapping import FIELDS, PRESETS, Mapping
from services.ingester.sources.readers import Row, SourceError, count_rows, detect_format, iter_rows
from shared.events import Record

DOLLY = [
    {
        "instruction": "When did Virgin Australia start operating?",
        "context": "Virgin Australia commenced services on 31 August 2000.",
        "response": "On 31 August 2000.",
        "category": "closed_qa",
    },
    {
        "instruction": "Which is a species of fish? Tope or Rope",
        "context": "",
        "response": "Tope",
        "category": "classification",
    },
]

ORCA = [
    {
        "system": "You are an AI assistant. Think step by step.",
        "question": "Is 17 a prime number?",
        "chosen": "Yes: 17 has no divisors but 1 and itself.",
        "rejected": "No.",
    },
    {
        "system": "",
        "question": "Translate 'hello' to French.",
        "chosen": "Bonjour.",
        "rejected": "Hola.",
    },
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def records(path: Path, mapping: Mapping, **kwargs: Any) -> list[Record]:
    return [
        Record.model_validate(mapping.to_record_input(row.data or {}, "imports", "test-source"))
        for row in iter_rows(path, **kwargs)
    ]


# --- Formats -------------------------------------------------------------------------------


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


# --- Presets -------------------------------------------------------------------------------


def test_dolly_preset_from_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dolly.jsonl", DOLLY)
    first, second = records(path, Mapping.from_options("dolly", [], None))
    assert first.flow == "imports"
    assert first.instruction == DOLLY[0]["instruction"]
    assert first.context == DOLLY[0]["context"]
    assert first.messages is None
    assert [(r.text, r.model, r.source) for r in first.responses] == [
        ("On 31 August 2000.", "test-source", "dataset")
    ]
    assert first.metadata == {"category": "closed_qa", "source": "test-source"}
    assert len(first.record_id) == 32  # content hash
    assert second.context is None  # an empty string is no context


def test_dolly_preset_from_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "dolly.csv", DOLLY)
    first, second = records(path, Mapping.from_options("dolly", [], None))
    assert first.instruction == DOLLY[0]["instruction"]
    assert second.context is None and second.responses[0].text == "Tope"


def test_orca_dpo_preset_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "orca.parquet"
    pq.write_table(pa.Table.from_pylist(ORCA), path)
    with_system, without_system = records(path, Mapping.from_options("orca_dpo", [], None))

    assert with_system.instruction is None
    assert [(m.role, m.content) for m in with_system.messages or []] == [
        ("system", ORCA[0]["system"]),
        ("user", ORCA[0]["question"]),
    ]
    assert [r.text for r in with_system.responses] == [ORCA[0]["chosen"], ORCA[0]["rejected"]]
    assert all(r.source == "dataset" for r in with_system.responses)
    assert with_system.metadata["preference"] == {"chosen": 0, "rejected": 1}

    # An empty system prompt adds no system turn: the question stays the instruction.
    assert without_system.instruction == ORCA[1]["question"]
    assert without_system.messages is None
    assert without_system.metadata["preference"] == {"chosen": 0, "rejected": 1}


def test_system_with_context_keeps_the_context_in_the_user_turn() -> None:
    mapping = Mapping.from_options(None, ["s=system", "q=instruction", "c=context"], None)
    raw = mapping.to_record_input({"s": "Be brief.", "q": "Summarise", "c": "Long text"}, "f", "x")
    record = Record.model_validate(raw)
    assert record.messages is not None
    assert record.messages[1].content == "Summarise\n\nLong text"
    assert record.context == "Long text"


def test_prompt_completion_preset_from_datasets_folder(tmp_path: Path) -> None:
    path = tmp_path / "pc"
    datasets.Dataset.from_list(
        [{"prompt": "2+2?", "completion": 4}, {"prompt": "Capital of France?", "completion": 1}]
    ).save_to_disk(str(path))
    first, second = records(path, Mapping.from_options("prompt_completion", [], None))
    assert (first.instruction, first.responses[0].text) == ("2+2?", "4")  # str() of a number
    assert (second.instruction, second.responses[0].text) == ("Capital of France?", "1")


def test_messages_preset_takes_the_last_assistant_turn_as_the_response(tmp_path: Path) -> None:
    chat = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": chat}]), path)
    (record,) = records(path, Mapping.from_options("messages", [], None))
    assert [m.role for m in record.messages or []] == ["system", "user"]
    assert [r.text for r in record.responses] == ["Hello! How can I help?"]


def test_messages_column_as_a_json_string_from_csv(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "Hi"}]
    path = write_csv(tmp_path / "chat.csv", [{"messages": json.dumps(chat), "answer": "Hey"}])
    (record,) = records(path, Mapping.from_options("messages", ["answer=response"], None))
    assert [(m.role, m.content) for m in record.messages or []] == [("user", "Hi")]
    assert [r.text for r in record.responses] == ["Hey"]


def test_sharegpt_conversations_are_converted_to_roles(tmp_path: Path) -> None:
    conversation = [
        {"from": "system", "value": "You are helpful."},
        {"from": "human", "value": "What is Kafka?"},
        {"from": "gpt", "value": "A distributed log."},
        {"from": "human", "value": "And Argilla?"},
        {"from": "gpt", "value": "A data annotation tool."},
    ]
    path = write_jsonl(
        tmp_path / "sharegpt.jsonl", [{"id": "conv-1", "conversations": conversation}]
    )
    mapping = Mapping.from_options("sharegpt", ["id=record_id"], None)
    (record,) = records(path, mapping)
    assert record.record_id == "conv-1"
    assert [(m.role, m.content) for m in record.messages or []] == [
        ("system", "You are helpful."),
        ("user", "What is Kafka?"),
        ("assistant", "A distributed log."),
        ("user", "And Argilla?"),
    ]
    assert [r.text for r in record.responses] == ["A data annotation tool."]


def test_chosen_and_rejected_chats_use_their_last_assistant_turn() -> None:
    row = {
        "prompt": "Name a colour.",
        "chosen": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
        "rejected": json.dumps(
            [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "7"}]
        ),
    }
    mapping = Mapping.from_options(None, [], list(row))
    assert mapping.preset == "dpo"
    record = Record.model_validate(mapping.to_record_input(row, "f", "uf"))
    assert record.instruction == "Name a colour."
    assert [r.text for r in record.responses] == ["Blue.", "7"]
    assert record.metadata["preference"] == {"chosen": 0, "rejected": 1}


def test_tags_category_and_metadata_columns() -> None:
    mapping = Mapping.from_options(
        "prompt_completion",
        ["labels=tags", "lang=metadata.language", "n=record_id", "kind=category"],
        None,
    )
    raw = mapping.to_record_input(
        {
            "prompt": "p",
            "completion": "c",
            "labels": "a, b,,a",
            "lang": "en",
            "n": 7,
            "kind": "qa",
            "unmapped": "zzz",
        },
        "f",
        "src",
    )
    record = Record.model_validate(raw)
    assert record.tags == ["a", "b"]
    assert record.metadata == {"category": "qa", "language": "en", "source": "src"}
    assert record.record_id == "7"
    assert "zzz" not in json.dumps(raw)  # unmapped columns are ignored

    listed = mapping.to_record_input({"prompt": "p", "labels": ["x", "y"]}, "f", "src")
    assert listed["tags"] == ["x", "y"]


def test_a_row_without_a_prompt_fails_record_validation() -> None:
    mapping = Mapping.from_options("dolly", [], None)
    raw = mapping.to_record_input({"instruction": "  ", "response": "orphan"}, "f", "src")
    assert "instruction" not in raw and "messages" not in raw
    with pytest.raises(ValidationError, match="needs an `instruction` or non-empty `messages`"):
        Record.model_validate(raw)
    empty = mapping.to_record_input({}, "f", "src")  # missing everything: still no exception
    with pytest.raises(ValidationError):
        Record.model_validate(empty)


def test_unknown_sharegpt_role_is_left_for_validation_to_reject() -> None:
    mapping = Mapping.from_options("sharegpt", [], None)
    raw = mapping.to_record_input(
        {"conversations": [{"from": "narrator", "value": "Once"}]}, "f", "s"
    )
    with pytest.raises(ValidationError):
        Record.model_validate(raw)


# --- Options -------------------------------------------------------------------------------


def test_presets_map_to_known_fields() -> None:
    assert {"dolly", "orca_dpo", "prompt_completion", "messages", "sharegpt"} <= set(PRESETS)
    for preset in PRESETS.values():
        assert set(preset.values()) <= set(FIELDS)


@pytest.mark.parametrize(
    ("columns", "preset"),
    [
        (["instruction", "context", "response", "category"], "dolly"),
        (["system", "question", "chosen", "rejected", "id"], "orca_dpo"),
        (["prompt", "completion"], "prompt_completion"),
        (["messages"], "messages"),
        (["id", "conversations"], "sharegpt"),
        (["instruction", "input", "output"], "alpaca"),
        # ultrafeedback_binarized: prompt/chosen/rejected beats the 1-column `messages`
        (["prompt", "prompt_id", "chosen", "rejected", "messages"], "dpo"),
    ],
)
def test_preset_is_detected_from_columns(columns: list[str], preset: str) -> None:
    mapping = Mapping.from_options(None, [], columns)
    assert mapping.preset == preset
    assert mapping.fields == {f: c for c, f in PRESETS[preset].items()}


def test_detection_failures_explain_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"no preset fits the columns a, b.*--map"):
        Mapping.from_options(None, [], ["a", "b"])
    with pytest.raises(ValueError, match="without the source's columns"):
        Mapping.from_options(None, [], None)


def test_maps_override_and_extend_the_preset() -> None:
    mapping = Mapping.from_options(
        "dolly", ["output=response", "context=metadata.background", "uid=record_id"], None
    )
    assert mapping.fields == {
        "instruction": "instruction",
        "category": "category",
        "response": "output",  # replaces the preset's response column
        "metadata.background": "context",  # the preset's context column goes elsewhere
        "record_id": "uid",
    }
    raw = mapping.to_record_input(
        {"instruction": "i", "context": "bg", "response": "old", "output": "new", "uid": "u1"},
        "f",
        "s",
    )
    record = Record.model_validate(raw)
    assert [r.text for r in record.responses] == ["new"]
    assert record.context is None and record.metadata["background"] == "bg"


def test_maps_alone_skip_detection() -> None:
    mapping = Mapping.from_options(None, ["text=instruction"], ["text", "messages"])
    assert mapping.preset is None and mapping.fields == {"instruction": "text"}


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (["instruction"], r"not `column=field`.*valid fields: record_id, instruction"),
        (["=instruction"], "not `column=field`"),
        (["q=question"], r"unknown field 'question'.*metadata\.<name>"),
        (["q=metadata."], "unknown field 'metadata.'"),
        (["a=instruction", "b=instruction"], "mapped from two columns"),
    ],
)
def test_bad_maps_are_value_errors(maps: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mapping.from_options(None, maps, None)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ValueError, match="unknown preset 'alpacca'; presets: dolly"):
        Mapping.from_options("alpacca", [], None)
    assert Mapping.from_options("orca-dpo", [], None).preset == "orca_dpo"
