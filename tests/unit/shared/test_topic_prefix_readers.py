"""The raw Kafka readers and writers with a topic prefix: each reads, writes and creates only its
flow set's topics (`KafkaSettings.topic`), on a cluster that also holds another set's topics and
unprefixed ones. Without a prefix nothing changes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cli.run import SERVICES, load_service
from devstack.stage_watch import StageWatcher
from services.exporter.export import store_path
from services.exporter.on_demand import announce, catch_up, export_now
from services.exporter.store import ExportStore
from services.feedback_collector.state import STATE_TOPIC, create_state_topic, read_state
from shared.broker import ensure_topics
from shared.dead_letter_replay import (
    REPLAYS_TOPIC,
    LetterFilter,
    dead_letter_topics,
    read_dead_letters,
    replay,
)
from shared.dead_letters import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_OFFSET,
    H_PARTITION,
    H_SERVICE,
    H_TOPIC,
)
from shared.events import (
    DATASETS_EXPORTED,
    RECORDS_COMPLETED,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    Record,
    dead_letter_topic,
)
from shared.flows import parse_flows
from shared.produced import ProducedIndex
from shared.settings import ExportSettings, KafkaSettings, Settings
from shared.topic_reader import read_to_end
from tests.unit.exporter.service_helpers import completed_event
from tests.unit.shared.fake_kafka import FakeCluster

A = KafkaSettings(topic_prefix="team-a.")
B = KafkaSettings(topic_prefix="team-b.")
NONE = KafkaSettings()
MODULES = (
    "shared.broker",
    "shared.topic_reader",
    "shared.produced",
    "shared.dead_letter_replay",
    "devstack.stage_watch",
    "shared.stages",
    "services.exporter.on_demand",
    "services.feedback_collector.state",
)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    found = FakeCluster()
    found.install(monkeypatch, *MODULES)
    return found


def on_every_set(cluster: FakeCluster, topic: str, key: str) -> None:
    """A message keyed `<set>-<key>` on `topic` of team-a, team-b and no prefix."""
    for name, kafka in (("a", A), ("b", B), ("none", NONE)):
        cluster.append(kafka.topic(topic), b"{}", key=f"{name}-{key}".encode())


def dead_letter(cluster: FakeCluster, kafka: KafkaSettings, source: str, record_id: str) -> None:
    """A dead letter as the middleware writes it: on the set's `<source>.dlq`, naming the
    source topic as it is on the cluster."""
    headers = {
        H_ERROR: "ValidationError: bad",
        H_ERROR_TYPE: "ValidationError",
        H_SERVICE: "judge",
        H_ATTEMPTS: "1",
        H_TOPIC: kafka.topic(source),
        H_PARTITION: "0",
        H_OFFSET: "7",
    }
    body = Record(record_id=record_id, flow="f", instruction="q").to_bytes()
    encoded = [(name, value.encode()) for name, value in headers.items()]
    cluster.append(kafka.topic(dead_letter_topic(source)), body, record_id.encode(), encoded)


async def test_read_to_end_reads_only_the_sets_topics(cluster: FakeCluster) -> None:
    on_every_set(cluster, RECORDS_JUDGED, "r1")
    for kafka, key in ((A, b"a-r1"), (NONE, b"none-r1")):
        read = [m async for batch in read_to_end(kafka, [RECORDS_JUDGED]) for m in batch]
        assert [(m.topic, m.key) for m in read] == [(kafka.topic(RECORDS_JUDGED), key)]


async def test_the_produced_index_reads_back_only_the_sets_output(cluster: FakeCluster) -> None:
    on_every_set(cluster, RECORDS_JUDGED, "r1")
    index = ProducedIndex(A, [RECORDS_JUDGED])
    try:
        assert await index.contains("a-r1")
        assert not await index.contains("b-r1")
        assert not await index.contains("none-r1")
    finally:
        await index.stop()


async def test_every_service_creates_only_the_sets_topics(cluster: FakeCluster) -> None:
    wanted: set[str] = set()
    for name in SERVICES:
        spec = load_service(name)
        await ensure_topics(A, spec.topics())
        wanted |= {A.topic(t) for t in spec.topics()}
    assert await create_state_topic(A)
    assert set(cluster.created) == {*wanted, "team-a.feedback.collector.state"}
    assert "team-a.records.judged.dlq" in cluster.created
    assert cluster.configs["team-a.feedback.collector.state"] == {"cleanup.policy": "compact"}

    await ensure_topics(NONE, load_service("judge").topics())  # no prefix: the names as ever
    assert cluster.created[-3:] == ["records.generated", "records.generated.dlq", "records.judged"]


async def test_the_collector_reads_its_sets_state_back(cluster: FakeCluster) -> None:
    on_every_set(cluster, STATE_TOPIC, "progress/d1")
    assert [m.key for m in await read_state(A)] == [b"a-progress/d1"]


async def test_loopline_dlq_reads_and_replays_only_the_sets_dead_letters(
    cluster: FakeCluster,
) -> None:
    for kafka, record_id in ((A, "a1"), (B, "b1"), (NONE, "n1")):
        dead_letter(cluster, kafka, RECORDS_JUDGED, record_id)
    dead_letter(cluster, A, RECORDS_INGESTED, "a2")

    assert await dead_letter_topics(A) == ["records.ingested.dlq", "records.judged.dlq"]
    # No prefix: every dead-letter topic on the cluster, as before prefixes existed.
    assert len(await dead_letter_topics(NONE)) == 4

    async def ids(wanted: LetterFilter | None = None) -> list[str | None]:
        letters = read_dead_letters(A, wanted or LetterFilter())
        return sorted([s.record_id async for s in letters])

    assert await ids() == ["a1", "a2"]
    for named in ("records.judged", "records.judged.dlq", "team-a.records.judged"):
        assert await ids(LetterFilter(topics=frozenset({named}))) == ["a1"], named

    letters = [s async for s in read_dead_letters(A, LetterFilter(record_ids=frozenset({"a1"})))]
    assert [s.topic for s in letters] == ["team-a.records.judged.dlq"]
    done = await replay(A, letters, apply=True)
    assert [s.record_id for s in done.replayed] == ["a1"]
    assert [
        Record.model_validate_json(v or b"").record_id
        for v in cluster.values("team-a.records.judged")
    ] == ["a1"]
    assert cluster.values(A.topic(REPLAYS_TOPIC)) == [b"ValidationError: bad"]
    assert {"records.judged", "dlq.replays", "team-b.records.judged"}.isdisjoint(cluster.topics)

    again = await replay(A, letters, apply=True)  # noted on the set's dlq.replays
    assert (again.replayed, [s.record_id for s in again.already]) == ([], ["a1"])


async def test_the_stage_watcher_counts_only_the_sets_records(cluster: FakeCluster) -> None:
    flow = parse_flows({"flows": {"f": {}}}, "x").flows["f"]
    for kafka in (A, B, NONE):  # the topics exist before watching begins
        for topic in (RECORDS_JUDGED, dead_letter_topic(RECORDS_JUDGED), DATASETS_EXPORTED):
            cluster.create(kafka.topic(topic))
    watcher = StageWatcher(A, "f", flow)
    await watcher.start()
    try:
        for kafka, record_id in ((B, "theirs"), (NONE, "unprefixed"), (A, "mine")):
            body = Record(record_id=record_id, flow="f", instruction="q").to_bytes()
            cluster.append(kafka.topic(RECORDS_JUDGED), body)
        for _ in range(200):
            if watcher.progress.count("ingested"):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # time enough for the others to be counted, were they read
    finally:
        await watcher.stop()
    assert watcher.progress.stages["ingested"].records == {"mine"}
    assert watcher.progress.auto_accepted == {"mine"}  # no publish stage: accepted as judged


async def test_loopline_export_reads_and_announces_on_the_sets_topics(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """Two sets run a flow of the same name: each set's export holds its own records only."""
    settings = Settings(kafka=A, export=ExportSettings(dir=tmp_path))
    flows = parse_flows(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {"formats": [{"plugin": "sft"}]},
                }
            }
        },
        "x",
    )
    (mine, body), (theirs, other) = completed_event(1), completed_event(2)
    cluster.append(A.topic(RECORDS_COMPLETED), body, mine.encode())
    cluster.append(RECORDS_COMPLETED, other, theirs.encode())
    summary = await catch_up(settings, flows, "support")
    assert (summary.read, summary.kept) == (1, 1)
    with ExportStore(store_path(settings, "support")) as store:  # positions on the cluster
        assert store.offsets() == {"team-a.records.completed": {"0": 0}}

    refs = flows.get("support").export.formats
    results = export_now(settings, flows, "support", refs)
    assert [sum(r.rows.values()) for r in results] == [1]
    await announce(settings, flows, results)
    assert len(cluster.values("team-a.datasets.exported")) == 1
    assert DATASETS_EXPORTED not in cluster.topics
