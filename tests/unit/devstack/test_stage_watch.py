"""The demo's stage watcher: counts a flow's records per stage by record id, from messages."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from devstack.stage_watch import FlowProgress, StageWatcher, stages_of
from shared.dead_letters import H_ERROR
from shared.events import (
    AnnotatorResponse,
    CompletedRecord,
    DatasetExported,
    Judgment,
    Rating,
    Record,
)
from shared.flows import parse_flows
from shared.settings import KafkaSettings

FLOWS = parse_flows(
    {
        "flows": {
            "people": {
                "generate": [{"plugin": "openai"}],
                "judge": {"plugin": "multi-aspect"},
                "publish": {"plugin": "preference", "when": {"margin_below": 2}},
            },
            "auto": {"judge": {"plugin": "multi-aspect"}},
        }
    },
    "test",
)


def message(topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Any:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=0,
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
        responses=[{"text": "a", "model": "m"}, {"text": "b", "model": "m"}],  # type: ignore[list-item]
        judgments=[Judgment(rubric="multi-aspect", judge_model="j", ratings=scores, margin=margin)],
    )


def watcher(flow: str) -> StageWatcher:
    return StageWatcher(KafkaSettings(), flow, FLOWS.flows[flow])


def test_stages_follow_the_flow() -> None:
    assert stages_of(FLOWS.flows["people"]) == [
        "ingested",
        "generated",
        "judged",
        "in Argilla",
        "answered",
        "completed",
    ]
    assert stages_of(FLOWS.flows["auto"]) == ["ingested", "judged"]


def test_counts_by_record_id_and_flow_and_finishes_people_and_auto_records() -> None:
    w = watcher("people")
    sure, unsure, other = (
        judged("r1", "people", 3.0),
        judged("r2", "people", 0.5),
        judged("x", "auto", 3.0),
    )
    for record in (sure, unsure, other):
        w.seen(message("records.ingested", record.model_dump_json().encode()))
        w.seen(message("records.judged", record.model_dump_json().encode()))
    w.seen(message("records.ingested", sure.model_dump_json().encode()))  # redelivered: once
    progress: FlowProgress = w.progress
    assert progress.count("ingested") == 2 and progress.count("judged") == 2
    assert progress.auto_accepted == {"r1"}  # margin 3 >= 2: the judge is sure
    assert progress.finished() == {"r1"}
    done = CompletedRecord(record=unsure, dataset="people")
    w.seen(message("records.completed", done.model_dump_json().encode()))
    assert progress.finished() == {"r1", "r2"}


def test_a_dead_letter_fails_the_record_at_the_next_stage_with_its_reason() -> None:
    w = watcher("people")
    record = judged("r1", "people", 0.5)
    w.seen(message("records.ingested", record.model_dump_json().encode()))
    w.seen(
        message(
            "records.ingested.dlq",
            record.model_dump_json().encode(),
            [(H_ERROR, b"LLMError: 400 context too long")],
        )
    )
    assert w.progress.failed() == {"r1": "generated: LLMError: 400 context too long"}
    assert w.progress.last_error("generated") == "LLMError: 400 context too long"
    assert w.progress.finished() == {"r1"}


def test_exported_versions_of_the_flow_are_kept() -> None:
    w = watcher("auto")
    for flow, version in (("auto", 3), ("people", 9)):
        event = DatasetExported(flow=flow, format="sft", version=version, location="/x", rows=4)
        w.seen(message("datasets.exported", event.model_dump_json().encode()))
    assert w.progress.exported == {"sft": (3, 4)}
    assert w.progress.export_paths == {"sft": "/x"}


def test_a_stage_with_nothing_new_while_records_wait_is_stalled() -> None:
    w = watcher("auto")
    record = judged("r1", "auto", 1.0)
    w.seen(message("records.ingested", record.model_dump_json().encode()))
    assert w.progress.stalled(after_s=3600) is None
    assert w.progress.stalled(after_s=0) == "judged"
    w.seen(message("records.judged", record.model_dump_json().encode()))
    assert w.progress.stalled(after_s=0) is None


def test_stages_a_flow_skips_are_seen_on_the_topic_its_records_land_on() -> None:
    flows = parse_flows(
        {
            "flows": {
                "people-only": {"publish": {"plugin": "sft-demonstration"}},
                "generate-only": {
                    "generate": [{"plugin": "openai"}],
                    "publish": {"plugin": "preference"},
                },
            }
        },
        "test",
    )
    # No generation, no judge: the import writes straight to records.judged.
    w = StageWatcher(KafkaSettings(), "people-only", flows.flows["people-only"])
    record = Record(record_id="r1", flow="people-only", instruction="q")
    w.seen(message("records.judged", record.model_dump_json().encode()))
    assert w.progress.count("ingested") == 1 and w.progress.count("judged") == 1
    answer = AnnotatorResponse(
        record_id="r1", dataset="people-only", annotator="a", status="submitted"
    )
    w.seen(message("feedback.responses", answer.model_dump_json().encode()))
    assert w.progress.count("answered") == 1
    # Generation without a judge: generated records go straight to records.judged.
    w = StageWatcher(KafkaSettings(), "generate-only", flows.flows["generate-only"])
    record = Record(record_id="r2", flow="generate-only", instruction="q")
    w.seen(message("records.ingested", record.model_dump_json().encode()))
    w.seen(message("records.judged", record.model_dump_json().encode()))
    assert [w.progress.count(s) for s in ("ingested", "generated", "judged")] == [1, 1, 1]
    w.seen(message("records.judged.dlq", record.model_dump_json().encode()))
    assert w.progress.failed() == {"r2": "in Argilla: dead-lettered"}


def test_watching_given_records_ignores_the_flows_other_records() -> None:
    """Records of an earlier run of the same flow (redelivered after a restart) finishing
    while the demo watches must not count as the demo's own."""
    w = StageWatcher(KafkaSettings(), "people", FLOWS.flows["people"], record_ids={"mine"})
    mine, earlier = judged("mine", "people", 0.5), judged("earlier", "people", 0.5)
    for record in (mine, earlier):
        w.seen(message("records.ingested", record.model_dump_json().encode()))
        w.seen(message("records.judged", record.model_dump_json().encode()))
    w.seen(
        message(
            "records.completed",
            CompletedRecord(record=earlier, dataset="people").model_dump_json().encode(),
        )
    )
    progress = w.progress
    assert progress.stages["ingested"].records == {"mine"}
    assert progress.stages["judged"].records == {"mine"}
    assert progress.finished() == set()
