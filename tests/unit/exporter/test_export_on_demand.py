"""`loopline export` says what it read: the flow's records accepted and not accepted apart from
other flows' records, and why records may not be accepted; a flow with neither a judge nor
people exports its records as they are, never silently nothing.

The topics are replaced by a list of messages (`read_to_end` is the only Kafka call).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from devstack.sample_records import completed, preference, record, response
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED

FLOWS = {
    "flows": {
        "people": {"publish": {"plugin": "preference"}, "export": [{"plugin": "dpo"}]},
        "raw": {"export": [{"plugin": "sft"}, {"plugin": "dpo"}]},
    }
}


def messages() -> list[tuple[str, bytes]]:
    answered = record(instruction="answered", flow="people", judge_scores=(4.0, 2.0))
    waiting = record(instruction="waiting", flow="people", judge_scores=(4.0, 2.0))
    answers = [response(answered, "ann1", preference(5, 1))]
    raw = [record(instruction=f"raw {i}", flow="raw") for i in range(3)]
    return [
        (RECORDS_JUDGED, answered.to_bytes()),
        (RECORDS_JUDGED, waiting.to_bytes()),
        *((RECORDS_JUDGED, r.to_bytes()) for r in raw),
        (RECORDS_COMPLETED, completed(answered, *answers).to_bytes()),
    ]


@pytest.fixture
def topics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The flows file; the topics hold `messages()`; nothing is announced."""

    async def read_to_end(kafka: Any, names: Sequence[str], start_at: Any) -> AsyncIterator[Any]:
        yield [
            SimpleNamespace(topic=topic, partition=0, offset=offset, value=value)
            for offset, (topic, value) in enumerate(messages())
        ]

    async def announce(*args: Any) -> None:
        return None

    monkeypatch.setattr("services.exporter.on_demand.read_to_end", read_to_end)
    monkeypatch.setattr("services.exporter.on_demand.announce", announce)
    monkeypatch.setenv("LOOPLINE_STACK_DIR", str(tmp_path / "state"))
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(yaml.safe_dump(FLOWS))
    return flows_file


def export(flows_file: Path, flow: str) -> str:
    outcome = CliRunner().invoke(app, ["export", "--flow", flow, "--flows-file", str(flows_file)])
    assert outcome.exit_code == 0, outcome.output
    return " ".join(outcome.output.split())  # rich wraps long lines


def test_export_counts_records_not_accepted_apart_from_other_flows(topics: Path) -> None:
    out = export(topics, "people")
    assert "read 6 message(s): 2 for people (1 accepted, 1 not accepted), 3 for other flows" in out
    assert "not accepted: records wait on records.judged until people answer them" in out
    assert "people/dpo: v1 (train 1, test 0 rows)" in out


def test_a_flow_without_judge_or_people_exports_its_records_as_they_are(
    topics: Path, tmp_path: Path
) -> None:
    out = export(topics, "raw")
    assert "read 6 message(s): 3 for raw (3 accepted, 0 not accepted), 3 for other flows" in out
    assert "not accepted:" not in out
    assert "raw/sft: v1" in out
    assert "raw/dpo: no rows, no version written" in out
    sft = tmp_path / "state" / "exports" / "raw" / "sft"
    assert (sft / "v1" / "manifest.json").is_file() and (sft / "README.md").is_file()
