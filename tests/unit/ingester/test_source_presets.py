"""Column presets (dolly, orca_dpo, prompt_completion, messages, sharegpt, dpo) mapping a
source's rows to records: prompts, conversations, responses, preferences, tags and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from services.ingester.sources.mapping import Mapping
from shared.events import Record
from tests.unit.ingester.source_rows import DOLLY, ORCA, records, write_csv, write_jsonl


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
