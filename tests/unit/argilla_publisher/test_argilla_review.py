"""The publisher under a flow's `publish.when`: only the records `shared.review` sends to people
reach Argilla, each carrying its decision; the others are counted, not published."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from pydantic import SecretStr

from devstack.sample_records import record
from services.argilla_publisher import app as publisher_app
from services.argilla_publisher import publishing
from services.argilla_publisher.bulk import UpsertResult
from services.argilla_publisher.dataset_settings import settings_diff, settings_shape
from services.argilla_publisher.routing import (
    REVIEW_DETAIL,
    REVIEW_REASON,
    ReviewTally,
    decide,
    mark,
    review_settings,
)
from services.argilla_publisher.targets import Publication, Target
from services.argilla_publisher.templates.preference import PreferenceTemplate
from shared.argilla_metadata import record_from_metadata
from shared.broker import build_broker
from shared.events import (
    RECORDS_JUDGED,
    RECORDS_PUBLISHED,
    Judgment,
    PublishedRecord,
    Record,
    ReviewDecision,
    ReviewReason,
)
from shared.flows import PublishRef, ReviewWhen, parse_flows
from shared.service import ServiceContext
from shared.settings import ArgillaSettings, Settings
from shared.templates import Template

GATED = PublishRef(plugin="preference", when=ReviewWhen(margin_below=2))
OPEN = PublishRef(plugin="preference")
FAILED = Judgment(rubric="multi-aspect", judge_model="j", status="failed", error="bad json")


def judged(record_id: str, margin: float | None, flow: str = "gated") -> Record:
    """A judged record whose judge margin is `margin` (None: its judgment failed)."""
    if margin is None:
        return record(flow=flow, record_id=record_id).model_copy(update={"judgments": [FAILED]})
    return record(flow=flow, record_id=record_id, judge_scores=(1.0 + margin, 1.0))


def test_settings_gain_review_reason_only_with_when() -> None:
    template = PreferenceTemplate()
    plain = review_settings(template.settings(1), OPEN)
    assert settings_shape(plain) == settings_shape(template.settings(1))  # no drift
    gated = review_settings(template.settings(1), GATED)
    assert settings_shape(gated)["metadata properties"][REVIEW_REASON] == {"type": "terms"}
    # A dataset made before the flow had `when` is told apart by the drift check.
    assert settings_diff(template.settings(1), gated) == [
        "metadata property 'review_reason' (terms) is missing from the dataset"
    ]


def test_a_template_with_its_own_review_reason_is_refused() -> None:
    import argilla as rg

    from services.argilla_publisher.templates.base import sdk_client

    settings = PreferenceTemplate().settings(1)
    settings.add(rg.TermsMetadataProperty(name=REVIEW_REASON, client=sdk_client()))
    with pytest.raises(ValueError, match="declares a 'review_reason' metadata property"):
        review_settings(settings, GATED)


def test_a_record_sent_to_people_carries_its_decision() -> None:
    record, decision = decide(judged("r1", 0.5), GATED.when)
    assert decision == ReviewDecision(
        to_people=True, reason=ReviewReason.low_margin, detail="margin 0.5 < 2"
    )
    assert record.review == decision
    shown = mark(PreferenceTemplate().to_record(record), decision)
    assert shown.metadata[REVIEW_REASON] == "low_margin"
    assert shown.metadata[REVIEW_DETAIL] == "margin 0.5 < 2"
    # The stored Loopline record (what `records.completed` will carry) has it too.
    assert record_from_metadata(shown.metadata).review == decision


def test_without_when_nothing_changes() -> None:
    original = judged("r2", 0.5, flow="open")
    record, decision = decide(original, OPEN.when)
    assert decision is None and record is original and record.review is None
    shown = mark(PreferenceTemplate().to_record(record), decision)
    assert REVIEW_REASON not in shown.metadata and REVIEW_DETAIL not in shown.metadata


def test_tally_lines_and_flush(caplog: pytest.LogCaptureFixture) -> None:
    tally = ReviewTally()
    for margin in (0.5, 1.0, 0.1, None, 3.0, 4.0):
        tally.add("gated", review_like(margin))
    tally.add("other", review_like(5.0))
    assert tally.lines() == [
        "flow gated: 4 to people (low_margin 3, judgment_failed 1), 2 auto-accepted (judge_sure 2)",
        "flow other: 0 to people, 1 auto-accepted (judge_sure 1)",
    ]
    with caplog.at_level(logging.INFO, logger="loopline.argilla_publisher"):
        tally.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "argilla-publisher: flow gated: 4 to people (low_margin 3, judgment_failed 1), "
        "2 auto-accepted (judge_sure 2)",
        "argilla-publisher: flow other: 0 to people, 1 auto-accepted (judge_sure 1)",
    ]
    assert tally.lines() == []


def review_like(margin: float | None) -> ReviewDecision:
    _, decision = decide(judged("x", margin), GATED.when)
    assert decision is not None
    return decision


@dataclass
class FakeDataset:
    name: str
    id: str


class FakeWriter:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, list[dict[str, Any]]]] = []

    async def upsert(self, dataset_id: str, name: str, items: list[dict[str, Any]]) -> UpsertResult:
        self.upserts.append((name, list(items)))
        return UpsertResult(upserted=list(range(len(items))))

    async def aclose(self) -> None:
        return None


def fake_prepare(
    client: Any, flow: str, ref: PublishRef, template: Template, workspace: str
) -> Publication:
    target = Target(FakeDataset(f"ds-{flow}", f"id-{flow}"), workspace)
    return Publication(flow, template, (target,), ref.when)


def fake_payload(record: Any, dataset: Any) -> dict[str, Any]:
    return {"id": str(record.id), "dataset": dataset.name, "metadata": dict(record.metadata)}


async def test_only_records_for_people_are_published(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = FakeWriter()
    monkeypatch.setattr(publisher_app.rg, "Argilla", lambda **_: object())
    monkeypatch.setattr(publisher_app, "BulkWriter", lambda *_, **__: writer)
    monkeypatch.setattr(publisher_app, "prepare", fake_prepare)
    monkeypatch.setattr(publishing, "payload", fake_payload)
    settings = Settings(argilla=ArgillaSettings(api_key=SecretStr("fake-argilla-key")))
    broker, dead_letters = build_broker(settings, "argilla-publisher")
    flows = parse_flows(
        {
            "flows": {
                "gated": {"publish": GATED.model_dump(exclude_defaults=True)},
                "open": {"publish": {"plugin": "preference"}},
            }
        },
        "test",
    )
    context = ServiceContext(
        name="argilla-publisher",
        settings=settings,
        flows=flows,
        broker=broker,
        dead_letters=dead_letters,
    )
    published: list[PublishedRecord] = []

    async def publish(body: bytes, *, topic: str, **_: Any) -> Any:
        # In place of the broker's unconfirmed publish (which returns a future to await
        # later, and which the test broker does not do).
        assert topic == RECORDS_PUBLISHED
        published.append(PublishedRecord.model_validate_json(body))
        return asyncio.sleep(0)

    margins = {"g-low": 0.5, "g-edge": 1.99, "g-failed": None, "g-sure": 2.0, "g-wide": 4.0}
    batch = [judged(rid, m) for rid, m in margins.items()] + [judged("o-low", 0.5, "open")]
    publisher_app.register(context)
    for step in context.starters:  # as run_service does before consuming
        await step()
    with caplog.at_level(logging.INFO, logger="loopline.argilla_publisher"):
        async with TestKafkaBroker(broker) as test_broker:
            monkeypatch.setattr(broker, "publish", publish)
            await test_broker.publish_batch(*(r.to_bytes() for r in batch), topic=RECORDS_JUDGED)

    sent = {item["id"]: item for _, items in writer.upserts for item in items}
    assert set(sent) == {"g-low", "g-edge", "g-failed", "o-low"}
    reasons = {rid: sent[rid]["metadata"].get(REVIEW_REASON) for rid in sent}
    assert reasons == {
        "g-low": "low_margin",
        "g-edge": "low_margin",
        "g-failed": "judgment_failed",
        "o-low": None,  # a flow without `when`: its dataset has no such property
    }
    stored = json.loads(sent["g-edge"]["metadata"]["loopline_record"])
    assert stored["review"] == {
        "to_people": True,
        "reason": "low_margin",
        "detail": "margin 1.99 < 2",
    }
    assert sorted(e.record_id for e in published) == ["g-edge", "g-failed", "g-low", "o-low"]
    assert context.stats.processed == len(batch)  # the auto-accepted ones count as done
    assert (
        "argilla-publisher: flow gated: 3 to people (low_margin 2, judgment_failed 1), "
        "2 auto-accepted (judge_sure 2)"
    ) in [r.getMessage() for r in caplog.records]
    for close in context.closers:
        await close()
