"""Reading back what a flow's run left: exported rows, records on the topics, Argilla records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_dataset

from devstack.annotators.rest import ArgillaREST, ListedRecord
from services.exporter.card import CARD, card_configs
from services.exporter.reading import load_version
from shared.events import RECORDS_COMPLETED, RECORDS_JUDGED, CompletedRecord, Record
from shared.settings import KafkaSettings
from tests.support.service_helpers import read_events, read_records


def exported_rows(version: Path, cache: Path, config: str | None = None) -> list[dict[str, Any]]:
    """Every row of an exported version (`<format dir>/v<N>`), all splits, loaded as the README
    documents it: the format directory's configuration `v<N>`, or `v<N>-<table>` (eval); a
    version the card no longer names (newer ones came meanwhile) from its manifest."""
    name = version.name if config is None else f"{version.name}-{config}"
    named = {c["config_name"] for c in card_configs((version.parent / CARD).read_text())}
    if name in named:
        loaded = load_dataset(str(version.parent), name, cache_dir=str(cache))
        assert isinstance(loaded, DatasetDict)
        return [row for split in loaded.values() for row in split.to_list()]
    whole = load_version(version)
    splits = list(whole) if config is None else [config]
    return [row for split in splits for row in whole[split].to_list()]


def by_record(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["record_id"], []).append(row)
    return grouped


async def judged_records(kafka: KafkaSettings, ids: list[str]) -> dict[str, Record]:
    """The records as they reached `records.judged` (the judge's output, or the import's)."""
    found = await read_records(kafka, RECORDS_JUDGED, set(ids), within_s=60)
    return {record.record_id: record for record in found}


async def completed_records(kafka: KafkaSettings, ids: list[str]) -> dict[str, CompletedRecord]:
    """The records people (the bots) completed, with every answer, from `records.completed`."""
    wanted = set(ids)
    found = await read_events(
        kafka,
        RECORDS_COMPLETED,
        CompletedRecord,
        keep=lambda event: event.record_id in wanted,
        done=lambda events: wanted <= {event.record_id for event in events},
        within_s=60,
    )
    return {event.record_id: event for event in found}


async def argilla_records(owner: ArgillaREST, workspace: str, dataset: str) -> list[ListedRecord]:
    """Every record of a dataset, with its suggestions and responses, as the owner lists it."""
    space = await owner.workspace(workspace)
    assert space is not None, f"no workspace {workspace}"
    found = {d["name"]: d for d in await owner.datasets(str(space["id"]))}
    assert dataset in found, f"no dataset {workspace}/{dataset}"
    dataset_id = str(found[dataset]["id"])
    questions = {str(q["id"]): q["name"] for q in await owner.questions(dataset_id)}
    return await owner.records(dataset_id, questions)
