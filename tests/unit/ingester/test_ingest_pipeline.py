"""The ingester's pipeline, routing and dedup window, with a scripted publisher (no broker)."""

from collections.abc import Sequence
from typing import Any

import pytest

from services.ingester.dedup import SeenWindow, content_fingerprint
from services.ingester.pipeline import IngestPipeline, Message, PublishFailed
from services.ingester.routers.rules import RulesRouter, sample_point
from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, RECORDS_UNROUTED, Record
from shared.flows import next_topic, parse_flows


class ScriptedPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.fail_next = False

    async def publish_many(self, messages: Sequence[Message]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker down")
        self.sent.extend(message[:3] for message in messages)  # the trace context aside


FLOWS = parse_flows(
    {
        "flows": {
            "gen": {"generate": [{"plugin": "openai"}]},
            "judge-only": {
                "judge": {"plugin": "x"},
                "route": {"plugin": "rules", "options": {"exclude_tags": ["t"]}},
            },
        }
    },
    "inline",
)


def pipeline() -> tuple[IngestPipeline, ScriptedPublisher]:
    publisher = ScriptedPublisher()
    return IngestPipeline(FLOWS, publisher, default_flow="gen"), publisher


async def test_records_go_to_the_next_stage_the_flow_uses() -> None:
    p, publisher = pipeline()
    result = await p.ingest(
        [
            {"instruction": "a"},  # default flow "gen" -> generator's input
            {"flow": "judge-only", "instruction": "b"},  # no generate: straight to the judge
            {"flow": "judge-only", "instruction": "c", "tags": ["t"]},  # excluded: unrouted
        ]
    )
    assert [topic for topic, _, _ in publisher.sent] == [
        RECORDS_INGESTED,
        RECORDS_GENERATED,
        RECORDS_UNROUTED,
    ]
    assert len(result.accepted) == 3 and len(result.unrouted) == 1
    unrouted = Record.model_validate_json(publisher.sent[2][2])
    assert unrouted.route is not None and unrouted.route.reason == "excluded tag(s) ['t']"
    assert all(key == Record.model_validate_json(v).record_id for _, key, v in publisher.sent)


async def test_a_failed_publish_is_not_remembered_so_the_retry_goes_through() -> None:
    p, publisher = pipeline()
    publisher.fail_next = True
    with pytest.raises(PublishFailed) as failed:
        await p.ingest([{"record_id": "r1", "instruction": "a"}])
    assert isinstance(failed.value.__cause__, ConnectionError)
    result = await p.ingest([{"record_id": "r1", "instruction": "a"}])
    assert result.duplicates == [] and len(publisher.sent) == 1
    again = await p.ingest([{"record_id": "r1", "instruction": "a"}])
    assert again.duplicates == ["r1"] and len(publisher.sent) == 1


async def test_duplicates_within_one_batch_and_non_objects() -> None:
    p, publisher = pipeline()
    result = await p.ingest([{"instruction": "Same"}, {"instruction": "  same "}, "text", 3])
    assert len(publisher.sent) == 1
    assert result.duplicates == [result.accepted[1]]  # the second one, by normalised content
    assert [r.index for r in result.rejected] == [2, 3]
    assert p.stats.rejected == 2 and p.stats.duplicates == 1


def test_seen_window_forgets_by_age_and_size() -> None:
    now = [0.0]
    window: SeenWindow[str] = SeenWindow(window_s=10, max_entries=3, clock=lambda: now[0])
    for key in "abc":
        window.add(key, key.upper())
    assert window.get("a") == "A"
    window.add("d", "D")  # over max_entries: the oldest goes
    assert window.get("a") is None and len(window) == 3
    now[0] = 11
    assert window.get("d") is None and len(window) == 0


def test_rules_router_sampling_is_stable_and_cap_resets() -> None:
    now = [0.0]
    router = RulesRouter(clock=lambda: now[0], sample_rate=0.5, cap={"max_records": 2, "per_s": 60})
    records = [Record(record_id=f"r{i}", flow="f", instruction="x") for i in range(200)]
    decisions = [router.decide(r) for r in records[:50]]
    assert [d.routed for d in decisions].count(True) == 2  # the cap
    kept_by_sample = [r for r in records if sample_point(r.record_id) < 0.5]
    assert 70 <= len(kept_by_sample) <= 130
    now[0] = 61
    assert router.decide(kept_by_sample[0]).routed  # a new window
    with pytest.raises(ValueError, match="sample_rte"):
        RulesRouter(sample_rte=0.5)


def test_rules_router_length_and_metadata_filters() -> None:
    router = RulesRouter(min_prompt_chars=5, max_prompt_chars=10, metadata={"app": "bot"})
    short = Record(flow="f", instruction="hi", metadata={"app": "bot"})
    other = Record(flow="f", instruction="hello there", metadata={"app": "web"})
    fine = Record(flow="f", instruction="hello", metadata={"app": "bot"})
    assert "shorter than 5" in router.decide(short).reason
    assert "metadata app='web'" in router.decide(other).reason
    assert router.decide(fine).routed


def test_fingerprint_normalises_case_and_space_but_not_responses() -> None:
    def rec(**fields: Any) -> Record:
        return Record(flow="f", **fields)

    base = content_fingerprint(rec(instruction="Hello  World"))
    assert content_fingerprint(rec(instruction=" hello world ")) == base
    answered = rec(
        instruction="Hello World", responses=[{"text": "hi", "model": "m", "source": "app"}]
    )
    assert content_fingerprint(answered) != base


def test_next_topic_skips_unused_stages() -> None:
    flows = parse_flows({"flows": {"bare": {}, "pub": {"publish": {"plugin": "p"}}}}, "x")
    assert next_topic(flows.get("bare"), "ingest") == "records.judged"
    assert next_topic(flows.get("pub"), "ingest") == "records.judged"
    assert next_topic(FLOWS.get("gen"), "ingest") == "records.ingested"
