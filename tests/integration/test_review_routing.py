"""People only where needed, on the real broker and Argilla: a flow with `publish.when`.

Judged records (built with their judgments, no LLM) go to `records.judged`; the publisher and
the exporter run in-process. Exactly the records whose judge margin is under the bound (and
the one whose judgment failed) reach Argilla, each with its `review_reason`; the exporter
auto-accepts exactly the others, each carrying its decision.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import argilla as rg
import pyarrow as pa
import pyarrow.parquet as pq

import devstack as stack
from devstack.sample_records import record
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.exporter.app import SERVICE as EXPORTER
from services.exporter.export import store_path
from services.exporter.reading import version_files
from services.exporter.store import AUTO, ExportStore
from shared.events import (
    DATASETS_EXPORTED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    DatasetExported,
    Judgment,
    PublishedRecord,
    Record,
    ReviewReason,
)
from shared.flows import FlowsConfig, parse_flows
from shared.settings import ExportSettings, Settings
from tests.support.service_helpers import (
    produce,
    read_events,
    running_service,
    with_argilla_and_collector,
)

RUN = uuid.uuid4().hex[:6]
FLOW = f"gate-{RUN}"
BOUND = 2.0
# Record suffix → the judge's margin (None: the judgment failed).
MARGINS: dict[str, float | None] = {
    "m0.5": 0.5,
    "m1.0": 1.0,
    "m1.99": 1.99,
    "failed": None,
    "m2.0": 2.0,
    "m2.5": 2.5,
    "m3.0": 3.0,
    "m4.0": 4.0,
}
FAILED = Judgment(rubric="multi-aspect", judge_model="j", status="failed", error="invalid JSON")
TO_PEOPLE = {f"{FLOW}-{k}" for k, m in MARGINS.items() if m is None or m < BOUND}
AUTO_ACCEPTED = {f"{FLOW}-{k}" for k, m in MARGINS.items() if m is not None and m >= BOUND}


def flows() -> FlowsConfig:
    return parse_flows(
        {
            "flows": {
                FLOW: {
                    "publish": {
                        "plugin": "preference",
                        "when": {"margin_below": BOUND},
                        "flush_interval_s": 0.5,
                    },
                    "export": {
                        "formats": [{"plugin": "sft"}],
                        "every_records": len(AUTO_ACCEPTED),
                        "every_s": 0,
                        "test_size": 0.0,
                    },
                }
            }
        },
        "review routing flows",
    )


def judged(suffix: str, margin: float | None) -> Record:
    """A judged record whose judge margin is `margin` (None: its judgment failed)."""
    fields = {"flow": FLOW, "record_id": f"{FLOW}-{suffix}", "instruction": f"Task {suffix}."}
    if margin is None:
        return record(**fields).model_copy(update={"judgments": [FAILED]})
    return record(judge_scores=(1.0 + margin, 1.0), **fields)


def argilla_records(
    owner: rg.Argilla, workspace: str, wanted: int, query: Any = None
) -> dict[str, Any]:
    """Argilla's records of the flow's dataset (id → record), once `wanted` are searchable."""
    dataset = owner.datasets(FLOW, workspace=workspace)
    assert dataset is not None, f"{workspace}/{FLOW} missing"
    deadline = time.monotonic() + 60
    while True:
        found = {r.id: r for r in dataset.records(query=query)}
        if len(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def exported_ids(version: Path) -> dict[str, bool]:
    """record_id → auto_accepted, over every split's Parquet files of a version."""
    shards = [path for files in version_files(version).values() for path in files]
    tables = [pq.read_table(path) for path in shards]
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return {row["record_id"]: row["auto_accepted"] for row in rows}


async def test_people_see_only_low_margin_records_and_the_rest_is_auto_accepted(
    local_stack: stack.StackConfig, settings: Settings, tmp_path: Path
) -> None:
    run_settings = with_argilla_and_collector(settings, local_stack).model_copy(
        update={
            "export": ExportSettings(dir=tmp_path, check_interval_s=1),
            "kafka": settings.kafka.model_copy(update={"group_prefix": f"gate-{RUN}"}),
        }
    )
    config = flows()
    records = [judged(suffix, margin) for suffix, margin in MARGINS.items()]
    async with (
        running_service(PUBLISHER, run_settings, config),
        running_service(EXPORTER, run_settings, config),
    ):
        await produce(run_settings.kafka, RECORDS_JUDGED, [r.to_bytes() for r in records])
        published = await read_events(
            run_settings.kafka,
            RECORDS_PUBLISHED,
            PublishedRecord,
            keep=lambda e: e.flow == FLOW,
            done=lambda found: {e.record_id for e in found} >= TO_PEOPLE,
            within_s=90,
            settle_s=3.0,
        )
        exported = await read_events(
            run_settings.kafka,
            DATASETS_EXPORTED,
            DatasetExported,
            keep=lambda e: e.flow == FLOW,
            done=lambda found: bool(found),
            within_s=90,
        )
    assert {e.record_id for e in published} == TO_PEOPLE

    owner = rg.Argilla(
        api_url=local_stack.argilla_url, api_key=local_stack.argilla_api_key.get_secret_value()
    )
    workspace = local_stack.argilla_workspace
    in_argilla = await asyncio.to_thread(argilla_records, owner, workspace, len(TO_PEOPLE))
    assert set(in_argilla) == TO_PEOPLE
    reasons = {rid: r.metadata["review_reason"] for rid, r in in_argilla.items()}
    assert reasons == {
        rid: ("judgment_failed" if rid.endswith("failed") else "low_margin") for rid in TO_PEOPLE
    }
    low = in_argilla[f"{FLOW}-m1.99"]
    assert low.metadata["review_detail"] == "margin 1.99 < 2"
    stored = json.loads(low.metadata["loopline_record"])  # what records.completed will carry
    assert stored["review"]["reason"] == "low_margin" and stored["review"]["to_people"] is True
    # `review_reason` is a metadata property: Argilla filters by it.
    only_failed = rg.Query(filter=rg.Filter(("metadata.review_reason", "==", "judgment_failed")))
    filtered = await asyncio.to_thread(argilla_records, owner, workspace, 1, only_failed)
    assert set(filtered) == {f"{FLOW}-failed"}

    [version] = exported
    assert (version.format, version.version, version.rows) == ("sft", 1, len(AUTO_ACCEPTED))
    assert exported_ids(Path(version.location)) == dict.fromkeys(AUTO_ACCEPTED, True)
    with ExportStore(store_path(run_settings, FLOW)) as store:
        kept = [row for batch in store.batches() for row in batch]
    assert {record_id for record_id, *_ in kept} == AUTO_ACCEPTED
    for _, kind, _, body in kept:
        decision = Record.model_validate_json(body).review
        assert kind == AUTO and decision is not None
        assert (decision.to_people, decision.reason) == (False, ReviewReason.judge_sure)
