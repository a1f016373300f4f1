"""Judged records → Argilla (publisher) → annotators' responses (collector) → exported datasets.

Everything real: Kafka, Argilla, the three services in-process. The exporter writes a version
after three completed records; `loopline export --from-start` into a fresh directory then
replays the topics and must write the same version byte for byte.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import argilla as rg
import httpx
import pytest
import yaml
from datasets import load_dataset
from typer.testing import CliRunner

import devstack as stack
from cli.app import app as cli
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.exporter.app import SERVICE as EXPORTER
from services.exporter.on_demand import catch_up, export_now
from services.exporter.reading import load_version, version_files
from services.feedback_collector.app import SERVICE as COLLECTOR
from shared.events import (
    DATASETS_EXPORTED,
    RECORDS_JUDGED,
    CandidateResponse,
    DatasetExported,
    Judgment,
    Rating,
    Record,
)
from shared.flows import parse_flows
from shared.settings import ExportSettings, Settings
from tests.support.service_helpers import (
    create_annotators,
    produce,
    read_events,
    running_service,
    with_argilla_and_collector,
)

RUN = uuid.uuid4().hex[:6]
FLOW = f"e2e-{RUN}"
API_KEY = "X-Argilla-Api-Key"


def judged(i: int) -> Record:
    return Record(
        record_id=f"{FLOW}-{i}",
        flow=FLOW,
        instruction=f"Sort a list of {i + 2} numbers in Python.",
        responses=[
            CandidateResponse(text=f"sorted(xs)  # {i}", model="model-a"),
            CandidateResponse(text=f"xs.sort() or None  # {i}", model="model-b"),
        ],
        judgments=[
            Judgment(
                rubric="multi-aspect",
                judge_model="judge-m",
                ratings=[[Rating(aspect="overall", score=4)], [Rating(aspect="overall", score=2)]],
                margin=2.0,
            )
        ],
    )


async def argilla_ids(api_url: str, key: str, dataset_id: str, wanted: int) -> dict[str, str]:
    """Loopline record id → Argilla record id, as the annotator sees the dataset."""
    async with httpx.AsyncClient(base_url=api_url, headers={API_KEY: key}, timeout=30) as client:
        for _ in range(120):
            found = await client.post(
                f"/api/v1/me/datasets/{dataset_id}/records/search", params={"limit": 100}, json={}
            )
            found.raise_for_status()
            ids = {i["record"]["external_id"]: i["record"]["id"] for i in found.json()["items"]}
            if len(ids) >= wanted:
                return ids
            await asyncio.sleep(0.5)
    raise AssertionError(f"the annotator does not see {wanted} records")


async def respond(api_url: str, key: str, record_id: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=api_url, headers={API_KEY: key}, timeout=30) as client:
        answer = await client.post(f"/api/v1/records/{record_id}/responses", json=body)
        assert answer.status_code == 201, answer.text


def preference(r1: int, r2: int, first: str) -> dict[str, Any]:
    order = ["response_1", "response_2"] if first == "response_1" else ["response_2", "response_1"]
    values = {
        "rating_response_1": r1,
        "rating_response_2": r2,
        "ranking": [{"value": v, "rank": k + 1} for k, v in enumerate(order)],
    }
    return {"status": "submitted", "values": {q: {"value": v} for q, v in values.items()}}


def files_of(path: Path) -> dict[str, bytes]:
    """A version's own files (manifest, report) and the shards it lists, by their path under
    the format's directory."""
    found = {
        str(p.relative_to(path.parent)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
    for files in version_files(path).values():
        found.update({str(Path(f).relative_to(path.parent)): Path(f).read_bytes() for f in files})
    return found


def assert_same_files(a: Path, b: Path) -> None:
    left, right = files_of(a), files_of(b)
    assert left.keys() == right.keys()
    differ = sorted(name for name in left if left[name] != right[name])
    manifests = [(path / "manifest.json").read_text() for path in (a, b)]
    assert not differ, (differ, *manifests)


async def test_annotated_records_become_versioned_datasets(
    local_stack: stack.StackConfig,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Webhooks only (reconciliation every 10 minutes): one completion per record.
    run_settings = with_argilla_and_collector(settings, local_stack).model_copy(
        update={
            "export": ExportSettings(dir=tmp_path / "service", check_interval_s=1),
            "kafka": settings.kafka.model_copy(update={"group_prefix": f"e2e-{RUN}"}),
        }
    )
    flows = parse_flows(
        {
            "flows": {
                FLOW: {
                    "publish": {
                        "plugin": "preference",
                        "min_submitted": 2,
                        "flush_interval_s": 0.5,
                    },
                    "export": {
                        "formats": [{"plugin": "dpo"}, {"plugin": "sft"}, {"plugin": "eval"}],
                        "every_records": 3,
                        "every_s": 0,
                        "test_size": 0.0,
                    },
                }
            }
        },
        "e2e flows",
    )
    owner = rg.Argilla(
        api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key.get_secret_value()
    )
    workspace = owner.workspaces(local_stack.argilla_workspace)
    ann1, ann2 = f"e2e1-{RUN}", f"e2e2-{RUN}"
    keys = await asyncio.to_thread(create_annotators, owner, workspace, [ann1, ann2])
    records = [judged(i) for i in range(4)]

    async with (
        running_service(PUBLISHER, run_settings, flows),
        running_service(COLLECTOR, run_settings, flows),
        running_service(EXPORTER, run_settings, flows),
    ):
        await produce(run_settings.kafka, RECORDS_JUDGED, [r.to_bytes() for r in records])
        dataset = await asyncio.to_thread(owner.datasets, FLOW, workspace=workspace.name)
        assert dataset is not None
        ids = await argilla_ids(local_stack.argilla_url, keys[ann1], str(dataset.id), 4)
        # Records 0-2: both annotators prefer response 1 (record 2: ann2 prefers response 2,
        # and the mean ratings still favour response 1). Record 3: one discard, never complete.
        for i, second in enumerate(["response_1", "response_1", "response_2"]):
            await respond(
                local_stack.argilla_url,
                keys[ann1],
                ids[records[i].record_id],
                preference(5, 2, "response_1"),
            )
            await respond(
                local_stack.argilla_url,
                keys[ann2],
                ids[records[i].record_id],
                preference(4, 3 if second == "response_2" else 1, second),
            )
        await respond(
            local_stack.argilla_url,
            keys[ann1],
            ids[records[3].record_id],
            {"status": "discarded", "values": {}},
        )

        exported = await read_events(
            run_settings.kafka,
            DATASETS_EXPORTED,
            DatasetExported,
            lambda e: e.flow == FLOW,
            lambda found: {e.format for e in found} == {"dpo", "sft", "eval"},
            within_s=120,
        )
    by_format = {e.format: e for e in exported}
    assert all(e.version == 1 for e in exported), exported

    dpo = load_version(by_format["dpo"].location)
    rows = sorted(dpo["train"].to_list(), key=lambda r: r["prompt"])
    assert [r["record_id"] for r in rows] == [records[i].record_id for i in range(3)]
    assert all(r["chosen"].startswith("sorted(xs)") for r in rows)
    assert [(r["score_chosen"], r["score_rejected"]) for r in rows] == [
        (4.5, 1.5),
        (4.5, 1.5),
        (4.5, 2.5),
    ]
    assert [r["disagreement"] for r in rows] == [False, False, True]
    assert dpo["test"].num_rows == 0
    # One line with `datasets` alone: the format directory's card has a config per version.
    parquet = load_dataset(str(Path(by_format["dpo"].location).parent), "v1", split="train")
    assert sorted(parquet["record_id"]) == [r["record_id"] for r in rows]
    sft = load_version(by_format["sft"].location)["train"].to_list()
    assert {r["messages"][-1]["content"] for r in sft} == {f"sorted(xs)  # {i}" for i in range(3)}
    win_rates = load_version(by_format["eval"].location)["win_rates"].to_list()
    assert [(w["model_a"], w["model_b"], w["wins"], w["losses"]) for w in win_rates] == [
        ("model-a", "model-b", 3, 0)
    ]
    report = (Path(by_format["dpo"].location) / "report.html").read_text()
    assert "rating_response_1" in report

    # A replay of the topics from their start, on demand, into a fresh directory.
    replay = run_settings.model_copy(update={"export": ExportSettings(dir=tmp_path / "replay")})
    caught = await catch_up(replay, flows, FLOW, from_start=True)
    assert caught.kept >= 3
    ref = next(r for r in flows.flows[FLOW].export.formats if r.plugin == "dpo")
    [again] = await asyncio.to_thread(export_now, replay, flows, FLOW, [ref])
    assert again.created and again.version == 1
    assert_same_files(again.path, Path(by_format["dpo"].location))

    # The same through the command line, as a user runs it (a fresh export directory).
    flows_file = tmp_path / "flows.yaml"
    flows_file.write_text(yaml.safe_dump(flows.model_dump(mode="json", exclude_defaults=True)))
    monkeypatch.setenv("LOOPLINE_FLOWS_FILE", str(flows_file))
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", run_settings.kafka.bootstrap_servers)
    monkeypatch.setenv("LOOPLINE_EXPORT__DIR", str(tmp_path / "cli"))
    outcome = await asyncio.to_thread(
        CliRunner().invoke, cli, ["export", "--flow", FLOW, "--format", "dpo"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert f"{FLOW}/dpo: v1 (train 3, test 0 rows)" in outcome.output
    cli_version = tmp_path / "cli" / FLOW / "dpo" / "v1"
    assert_same_files(cli_version, Path(by_format["dpo"].location))
    again_cli = await asyncio.to_thread(
        CliRunner().invoke, cli, ["export", "--flow", FLOW, "--format", "dpo"]
    )
    assert f"{FLOW}/dpo: unchanged since v1" in again_cli.output
    wrong = await asyncio.to_thread(
        CliRunner().invoke, cli, ["export", "--flow", FLOW, "--format", "csv"]
    )
    assert wrong.exit_code == 2 and "does not export csv" in wrong.output
