"""Counting by record id what came out of a chaos run: the records on every stage's topic,
in Argilla, in the latest export version of each counted format, and in dead-letter topics."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.annotators.rest import ArgillaREST
from services.exporter.reading import version_files
from shared.broker import admin_client_options
from shared.dead_letter_replay import StoredDeadLetter, dead_letter_topics, read_dead_letters
from shared.events import (
    RECORDS_COMPLETED,
    RECORDS_GENERATED,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    Record,
)
from shared.flows import FlowsConfig
from shared.review import review
from shared.settings import ArgillaSettings, KafkaSettings
from shared.topic_reader import read_to_end
from tests.chaos.system import COUNTED_FORMATS

STAGE_TOPICS = (RECORDS_INGESTED, RECORDS_GENERATED, RECORDS_JUDGED, RECORDS_PUBLISHED)


def _record_id(body: object) -> str | None:
    if not isinstance(body, dict):
        return None
    nested = body.get("record")
    found = body.get("record_id") or (nested.get("record_id") if isinstance(nested, dict) else None)
    return found if isinstance(found, str) else None


async def topic_ids(kafka: KafkaSettings, topic: str) -> Counter[str]:
    """How many messages of each record id `topic` holds now."""
    seen: Counter[str] = Counter()
    async for batch in read_to_end(kafka, [topic]):
        for message in batch:
            try:
                record_id = _record_id(json.loads(message.value or b""))
            except ValueError:
                continue
            if record_id is not None:
                seen[record_id] += 1
    return seen


async def judged_records(kafka: KafkaSettings) -> dict[str, Record]:
    """The last version of each record on `records.judged`."""
    found: dict[str, Record] = {}
    async for batch in read_to_end(kafka, [RECORDS_JUDGED]):
        for message in batch:
            record = Record.model_validate_json(message.value or b"")
            found[record.record_id] = record
    return found


async def end_offsets(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Per topic, the sum of its partitions' end offsets (those with any)."""
    consumer = AIOKafkaConsumer(**admin_client_options(kafka), group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    totals: Counter[str] = Counter()
    for tp, end in ends.items():
        totals[tp.topic] += end
    return {topic: n for topic, n in totals.items() if n}


def latest_version(format_dir: Path) -> Path | None:
    numbered = [
        (int(p.name[1:]), p) for p in format_dir.glob("v*") if p.name[1:].isdigit() and p.is_dir()
    ]
    return max(numbered)[1] if numbered else None


def version_ids(version: Path) -> Counter[str]:
    """Rows per record id in a version, every split."""
    ids: Counter[str] = Counter()
    for shard in (Path(f) for files in version_files(version).values() for f in files):
        ids.update(pq.read_table(shard, columns=["record_id"]).column(0).to_pylist())
    return ids


async def argilla_ids(argilla: ArgillaSettings) -> Counter[str]:
    """Argilla records per external id (the record id), over every dataset the owner sees."""
    counted: Counter[str] = Counter()
    async with ArgillaREST(argilla.api_url, argilla.api_key_value()) as owner:
        spaces = await owner.call("GET", "/api/v1/me/workspaces")
        for space in spaces["items"]:
            for dataset in await owner.datasets(str(space["id"])):
                for record in await owner.records(str(dataset["id"]), {}):
                    counted[record.external_id] += 1
    return counted


@dataclass
class Observed:
    """One look at everything, for the records a run fed (`flows`: record id -> flow)."""

    flows: dict[str, str]
    topics: dict[str, Counter[str]] = field(default_factory=dict)
    to_people: set[str] = field(default_factory=set)
    completed: Counter[str] = field(default_factory=Counter)
    exports: dict[str, dict[str, tuple[str, Counter[str]]]] = field(default_factory=dict)
    argilla: Counter[str] = field(default_factory=Counter)
    dead_letters: list[StoredDeadLetter] = field(default_factory=list)
    # Messages each dead-letter topic holds by its end offsets: a second count that does not
    # depend on reading them (the broker's end offsets can fall short, never above zero).
    dlq_offsets: dict[str, int] = field(default_factory=dict)

    def finished(self, record_id: str) -> bool:
        """Completed (if it went to people) and in the latest version of each counted format."""
        if record_id in self.to_people and record_id not in self.completed:
            return False
        exported = self.exports.get(self.flows[record_id], {})
        return all(
            fmt in exported and record_id in exported[fmt][1]
            for fmt in COUNTED_FORMATS[self.flows[record_id]]
        )

    def dead_ids(self) -> set[str]:
        return {letter.record_id for letter in self.dead_letters if letter.record_id is not None}

    def waiting(self) -> set[str]:
        """Records neither finished nor dead-lettered: still on their way (or lost)."""
        dead = self.dead_ids()
        return {r for r in self.flows if r not in dead and not self.finished(r)}

    def gaps(self) -> dict[str, int]:
        """Per stage topic, the records that went further (completed or exported) but that the
        topic does not hold: messages the broker acknowledged and no longer serves."""
        further = set(self.completed) | {
            r for formats in self.exports.values() for _, ids in formats.values() for r in ids
        }
        further &= self.flows.keys()
        return {
            topic: len(further - self.topics[topic].keys())
            for topic in (RECORDS_INGESTED, RECORDS_GENERATED, RECORDS_JUDGED)
            if further - self.topics[topic].keys()
        }

    def where(self, record_id: str) -> str:
        """The furthest place a record was seen, and what it still lacks."""
        reached = [topic for topic in STAGE_TOPICS if record_id in self.topics.get(topic, ())]
        last = reached[-1] if reached else "nowhere (not on records.ingested)"
        lacks = []
        if record_id in self.to_people and record_id not in self.completed:
            lacks.append("completion")
        for fmt, (_, ids) in self.exports.get(self.flows[record_id], {}).items():
            if record_id not in ids:
                lacks.append(f"{fmt} export")
        return f"last on {last}; lacks {', '.join(lacks) or 'an export version'}"


async def observe(
    kafka: KafkaSettings,
    argilla: ArgillaSettings | None,
    flows_config: FlowsConfig,
    export_dir: Path,
    flows: dict[str, str],
) -> Observed:
    """Topics, exports, dead letters (and Argilla, when `argilla` is given) now."""
    seen = Observed(flows)
    for topic in STAGE_TOPICS:
        seen.topics[topic] = await topic_ids(kafka, topic)
    seen.completed = await topic_ids(kafka, RECORDS_COMPLETED)
    judged = await judged_records(kafka)
    for record_id, flow in flows.items():
        publish = flows_config.get(flow).publish
        if publish is None:
            continue
        if publish.when is None:
            seen.to_people.add(record_id)  # every record of the flow, judged or not
        elif record_id in judged and review(judged[record_id], publish.when).to_people:
            seen.to_people.add(record_id)
    for flow, formats in COUNTED_FORMATS.items():
        for fmt in formats:
            version = latest_version(export_dir / flow / fmt)
            if version is not None:
                seen.exports.setdefault(flow, {})[fmt] = (version.name, version_ids(version))
    seen.dead_letters = [letter async for letter in read_dead_letters(kafka)]
    seen.dlq_offsets = await end_offsets(kafka, await dead_letter_topics(kafka))
    if argilla is not None:
        seen.argilla = await argilla_ids(argilla)
        # A record whose judged message cannot be read (see `gaps`) was sent to people if
        # Argilla has it.
        seen.to_people |= {r for r in seen.argilla if r in flows and r not in judged}
    return seen
