"""`loopline ingest` for every format, read back from the real broker."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import yaml

from services.ingester.sources.mapping import Mapping
from shared.events import RECORDS_INGESTED, Record
from shared.settings import Settings
from tests.support.service_helpers import read_records

from .conftest import INGEST_FLOWS


def expected_ids(rows: list[dict[str, Any]], source: str, preset: str | None = None) -> set[str]:
    mapping = Mapping.from_options(preset, [], list(rows[0]))
    return {
        Record.model_validate(mapping.to_record_input(row, "imports", source)).record_id
        for row in rows
    }


def run_ingest(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(yaml.safe_dump(INGEST_FLOWS))
    env = {
        **os.environ,
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "LOOPLINE_KAFKA__TOPIC_PARTITIONS": "2",
        "LOOPLINE_FLOWS_FILE": str(flows_file),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", "ingest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_jsonl_dolly_with_bad_rows(settings: Settings, tmp_path: Path, tag: str) -> None:
    rows = [
        {
            "instruction": f"Name a river {tag}",
            "context": "",
            "response": "Nile",
            "category": "open_qa",
        },
        {
            "instruction": f"Summarise {tag}",
            "context": "Kafka is a log.",
            "response": "A log.",
            "category": "summarization",
        },
    ]
    path = tmp_path / "dolly.jsonl"
    lines = [
        json.dumps(rows[0]),
        "{broken json",
        json.dumps(rows[1]),
        json.dumps({"instruction": "", "context": "", "response": "orphan", "category": "x"}),
        json.dumps(rows[0]),
    ]
    path.write_text("\n".join(lines) + "\n")
    done = run_ingest(settings, tmp_path, str(path), "--flow", "imports")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "5 rows → ingested 2 (0 not routed), duplicates 1, rejected 2" in done.stdout
    assert "rejected line 2:" in done.stdout
    assert "rejected line 4:" in done.stdout and "needs an `instruction`" in done.stdout
    ids = expected_ids(rows, "dolly.jsonl")
    arrived = await read_records(settings.kafka, RECORDS_INGESTED, ids)
    assert len(arrived) == 2
    by_instruction = {r.instruction: r for r in arrived}
    summary = by_instruction[f"Summarise {tag}"]
    assert summary.context == "Kafka is a log."
    assert summary.responses[0].text == "A log." and summary.responses[0].source == "dataset"
    assert summary.metadata["category"] == "summarization"


async def test_csv_orca_dpo(settings: Settings, tmp_path: Path, tag: str) -> None:
    rows = [
        {"system": "You are helpful.", "question": f"2+2? {tag}", "chosen": "4", "rejected": "5"},
        {
            "system": "",
            "question": f"Capital of France? {tag}",
            "chosen": "Paris",
            "rejected": "Lyon",
        },
    ]
    path = tmp_path / "orca.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = run_ingest(settings, tmp_path, str(path), "--flow", "imports")
    assert done.returncode == 0, done.stderr
    assert "ingested 2" in done.stdout
    arrived = await read_records(settings.kafka, RECORDS_INGESTED, expected_ids(rows, "orca.csv"))
    first = next(r for r in arrived if r.messages)
    assert [m.role.value for m in first.messages or []] == ["system", "user"]
    assert [r.text for r in first.responses] == ["4", "5"]
    assert first.metadata["preference"] == {"chosen": 0, "rejected": 1}


async def test_parquet_with_explicit_map(settings: Settings, tmp_path: Path, tag: str) -> None:
    rows = [{"q": f"prompt {i} {tag}", "a": f"completion {i}", "lang": "en"} for i in range(30)]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    done = run_ingest(
        settings,
        tmp_path,
        str(path),
        "--flow",
        "imports",
        "--map",
        "q=instruction",
        "--map",
        "a=response",
        "--map",
        "lang=metadata.lang",
        "--batch-size",
        "8",
    )
    assert done.returncode == 0, done.stderr
    assert "30 rows → ingested 30" in done.stdout
    mapping = Mapping.from_options(
        None, ["q=instruction", "a=response", "lang=metadata.lang"], ["q", "a", "lang"]
    )
    ids = {
        Record.model_validate(mapping.to_record_input(r, "imports", "pairs.parquet")).record_id
        for r in rows
    }
    arrived = await read_records(settings.kafka, RECORDS_INGESTED, ids)
    assert len(arrived) == 30
    assert all(r.metadata["lang"] == "en" for r in arrived)

    typo = run_ingest(
        settings, tmp_path, str(path), "--flow", "imports", "--map", "question=instruction"
    )
    assert typo.returncode == 2
    assert "mapped column(s) question not in the source" in typo.stderr


async def test_datasets_folder_chat_messages(settings: Settings, tmp_path: Path, tag: str) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"hi {i} {tag}"},
                {"role": "assistant", "content": f"hello {i}"},
            ]
        }
        for i in range(4)
    ]
    folder = tmp_path / "chat"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:3]),
            "test": datasets.Dataset.from_list(rows[3:]),
        }
    ).save_to_disk(str(folder))
    done = run_ingest(settings, tmp_path, str(folder), "--flow", "imports", "--split", "train")
    assert done.returncode == 0, done.stderr
    assert "3 rows → ingested 3" in done.stdout
    arrived = await read_records(settings.kafka, RECORDS_INGESTED, expected_ids(rows[:3], "chat"))
    assert len(arrived) == 3
    assert all(r.responses[0].text.startswith("hello") for r in arrived)
    assert all(r.messages and r.messages[-1].role.value == "user" for r in arrived)


def test_unknown_flow_and_missing_file(settings: Settings, tmp_path: Path) -> None:
    done = run_ingest(settings, tmp_path, str(tmp_path / "nope.jsonl"), "--flow", "imports")
    assert done.returncode == 2 and "nope.jsonl" in done.stderr
    path = tmp_path / "x.jsonl"
    path.write_text('{"instruction": "x"}\n')
    done = run_ingest(settings, tmp_path, str(path), "--flow", "missing")
    assert done.returncode == 2 and "unknown flow 'missing'" in done.stderr
