"""Counting a flow's records per stage (shared/stages.py): where records are, which are stuck,
and reading the set's topics from a point in time on an in-memory cluster."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from cli.run import load_service
from shared.dead_letters import H_ERROR
from shared.events import (
    AnnotatorResponse,
    CompletedRecord,
    Judgment,
    PublishedRecord,
    Rating,
    Record,
)
from shared.flows import parse_flows
from shared.settings import KafkaSettings
from shared.stages import SERVICE_INPUTS, StageCounter, TopicFollower, stage_key
from tests.unit.shared.fake_kafka import FakeCluster, Message

FLOWS = parse_flows(
    {
        "flows": {
            "people": {
                "generate": [{"plugin": "openai"}],
                "judge": {"plugin": "multi-aspect"},
                "publish": {
                    "plugin": "preference",
                    "dataset": "prefs",
                    "when": {"margin_below": 2},
                },
            },
            "auto": {"judge": {"plugin": "multi-aspect"}},
        }
    },
    "test",
).flows
NOW = 1_800_000_000.0


def message(
    topic: str, event: Any, at: float = NOW, headers: list[tuple[str, bytes]] | None = None
) -> Any:
    value = event if isinstance(event, bytes) else event.model_dump_json().encode()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=int(at * 1000),
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=headers or [],
    )


def judged(record_id: str, flow: str, margin: float) -> Record:
    scores = [[Rating(aspect="overall", score=5)], [Rating(aspect="overall", score=5 - margin)]]
    return Record(
        record_id=record_id,
        flow=flow,
        instruction="q",
        responses=[{"text": "a", "model": "m"}, {"text": "b", "model": "m"}],
        judgments=[Judgment(rubric="multi-aspect", judge_model="j", ratings=scores, margin=margin)],
    )


def test_positions_say_where_records_are_and_which_are_stuck() -> None:
    counter = StageCounter(KafkaSettings(), FLOWS, count_unknown=True)
    old, recent = NOW - 3600, NOW - 10
    # r1: ingested an hour ago, nothing since: stuck at ingested.
    counter.seen(message("records.ingested", judged("r1", "people", 3), at=old))
    # r2: ingested and generated just now: at generated, not stuck yet.
    counter.seen(message("records.ingested", judged("r2", "people", 3), at=old))
    counter.seen(message("records.generated", judged("r2", "people", 3), at=recent))
    # r3: judged sure (margin 3 >= 2): auto-accepted, finished.
    for topic in ("records.ingested", "records.generated", "records.judged"):
        counter.seen(message(topic, judged("r3", "people", 3), at=old))
    # r4: judged unsure, in Argilla for an hour: stuck there (waiting on people).
    for topic in ("records.ingested", "records.generated", "records.judged"):
        counter.seen(message(topic, judged("r4", "people", 0.5), at=old))
    published = PublishedRecord(record_id="r4", flow="people", dataset="prefs", workspace="w")
    counter.seen(message("records.published", published, at=old))
    # r5: dead-lettered by the generator: failed at generated.
    counter.seen(message("records.ingested", judged("r5", "people", 3), at=old))
    letter = [(H_ERROR, b"LLMError: 400 context too long")]
    counter.seen(message("records.ingested.dlq", judged("r5", "people", 3), old, letter))
    # A record of a flow not in the flow file.
    counter.seen(message("records.ingested", judged("x", "gone", 3), at=old))

    people = counter.progress["people"]
    positions = people.positions(NOW, stuck_after_s=300)
    assert {name: p.reached for name, p in positions.items()} == {
        "ingested": 5,
        "generated": 3,
        "judged": 2,
        "in Argilla": 1,
        "answered": 0,
        "completed": 0,
    }
    assert {name: p.at for name, p in positions.items() if p.at} == {
        "ingested": 1,
        "generated": 1,
        "in Argilla": 1,
    }
    assert {name: p.stuck for name, p in positions.items() if p.stuck} == {
        "ingested": 1,
        "in Argilla": 1,
    }
    assert {name: p.failed for name, p in positions.items() if p.failed} == {"generated": 1}
    assert people.auto_accepted == {"r3"}
    assert counter.unknown == {"gone": {"x"}}
    assert counter.progress["auto"].count("ingested") == 0
    # With a longer bound nothing is stuck.
    assert not any(p.stuck for p in people.positions(NOW, stuck_after_s=7200).values())


def test_an_answer_counts_for_the_flow_of_its_dataset_and_completion_finishes() -> None:
    counter = StageCounter(KafkaSettings(), FLOWS)
    # The record was ingested before the window: only its answer and completion are read.
    answer = AnnotatorResponse(
        record_id="r9", dataset="prefs-v2", annotator="ann", status="submitted"
    )
    counter.seen(message("feedback.responses", answer, at=NOW - 1))
    people = counter.progress["people"]
    assert people.count("answered") == 1
    assert people.positions(NOW, 0)["answered"].stuck == 1
    done = CompletedRecord(record=judged("r9", "people", 0.5), dataset="prefs-v2")
    counter.seen(message("records.completed", done))
    positions = people.positions(NOW, 0)
    assert positions["completed"].reached == 1
    assert sum(p.at for p in positions.values()) == 0  # finished: nowhere stuck


def test_a_replayed_dead_letter_counts_where_the_record_got_since() -> None:
    counter = StageCounter(KafkaSettings(), FLOWS)
    record = judged("r1", "auto", 3)
    counter.seen(message("records.generated", record))
    counter.seen(message("records.generated.dlq", record, headers=[(H_ERROR, b"boom")]))
    auto = counter.progress["auto"]
    assert auto.positions(NOW, 0)["judged"].failed == 1
    counter.seen(message("records.judged", record))  # replayed, judged this time
    positions = auto.positions(NOW, 0)
    assert positions["judged"].failed == 0
    assert positions["judged"].reached == 1
    assert auto.auto_accepted == {"r1"}  # no people in the flow
    assert sum(p.at for p in positions.values()) == 0


def test_stage_keys_and_every_services_inputs() -> None:
    assert stage_key("in Argilla") == "in_argilla"
    for service, inputs in SERVICE_INPUTS.items():
        assert load_service(service).consumes == inputs, service


def record_bytes(record_id: str, flow: str = "auto") -> bytes:
    return Record(record_id=record_id, flow=flow, instruction="q").to_bytes()


def ids(messages: list[Message]) -> list[str]:
    return [Record.model_validate_json(m.value or b"").record_id for m in messages]


async def test_the_follower_reads_from_a_time_then_keeps_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = FakeCluster()
    cluster.install(monkeypatch, "shared.stages")
    kafka = KafkaSettings(topic_prefix="a.")
    now_ms = int(time.time() * 1000)
    cluster.create("a.records.ingested", partitions=2)
    cluster.append("a.records.ingested", record_bytes("old"), timestamp_ms=now_ms - 3_600_000)
    cluster.append("a.records.ingested", record_bytes("new"), timestamp_ms=now_ms - 1000)
    cluster.append("a.records.ingested", record_bytes("p1"), partition=1)
    cluster.append("records.ingested", record_bytes("unprefixed"))
    follower = TopicFollower(kafka, ["records.ingested", "records.judged"], since=time.time() - 60)
    seen: list[Message] = []
    await follower.start()
    try:
        assert await follower.catch_up(seen.append) == 2
        assert sorted(ids(seen)) == ["new", "p1"]
        # Later: another message, and a topic that did not exist, read from the time too.
        cluster.append("a.records.ingested", record_bytes("later"))
        cluster.append("a.records.judged", record_bytes("judged"))
        cluster.append("a.records.judged", record_bytes("too old"), timestamp_ms=now_ms - 10**7)
        assert await follower.catch_up(seen.append) == 2
        assert sorted(ids(seen[2:])) == ["judged", "later"]
        assert await follower.catch_up(seen.append) == 0
    finally:
        await follower.stop()


async def test_a_follower_from_the_end_sees_only_what_comes_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = FakeCluster()
    cluster.install(monkeypatch, "shared.stages")
    cluster.append("records.judged", record_bytes("before"))
    follower = TopicFollower(KafkaSettings(), ["records.judged"], since=None)
    seen: list[Message] = []
    await follower.start()
    try:
        assert await follower.catch_up(seen.append) == 0
        cluster.append("records.judged", record_bytes("after"))
        assert await follower.poll(seen.append) == 1
    finally:
        await follower.stop()
    assert ids(seen) == ["after"]
