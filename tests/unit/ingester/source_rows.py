"""Rows for the source tests: a few Dolly and Orca-DPO rows, writers for JSON Lines and CSV
files, and the records a mapping makes of a file's rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from services.ingester.sources.mapping import Mapping
from services.ingester.sources.readers import iter_rows
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
