"""Completed records: announced once per set of responses, whichever path sees them and across
restarts; one that cannot be sent is dead-lettered with its reason and the rest go on."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED, Judgment
from tests.unit.feedback_collector.fakes import FakeArgilla, FakeBroker, Life, ago, loopline_record


def completions(broker: FakeBroker) -> Counter[str]:
    return Counter(e["record"]["record_id"] for e in broker.values(RECORDS_COMPLETED))


async def test_a_record_is_announced_completed_once_unless_its_responses_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    record = argilla.add(dataset, loopline_record("r1"))
    argilla.respond(record, "ann1", at=ago(30), rating=4)

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    assert completions(broker) == {"r1": 1}

    # The worker's late delivery of the same completion, then another pass: nothing new.
    late = await life.webhook(argilla.completed_hook(record))
    assert (late.code, late.body["status"]) == (200, "duplicate")
    await life.reconcile()
    assert completions(broker) == {"r1": 1}

    # After a restart, neither the late webhook nor the pass announce it again.
    life = Life(argilla, broker, monkeypatch)
    await life.start()
    late = await life.webhook(argilla.completed_hook(record))
    assert (late.code, late.body["status"]) == (200, "duplicate")
    await life.reconcile()
    assert completions(broker) == {"r1": 1}

    # The same answer submitted again (a new `updated_at`, the same values): still once.
    argilla.respond(record, "ann1", rating=4)
    assert (await life.webhook(argilla.completed_hook(record))).body["status"] == "duplicate"
    await life.reconcile()
    assert completions(broker) == {"r1": 1}

    # A changed answer, then a new one: each is a new set of responses, announced once.
    argilla.respond(record, "ann1", rating=2)
    assert (await life.webhook(argilla.completed_hook(record))).body["status"] == "sent"
    argilla.respond(record, "ann2", rating=3)
    await life.reconcile()
    assert (await life.webhook(argilla.completed_hook(record))).body["status"] == "duplicate"
    assert completions(broker) == {"r1": 3}
    last = broker.values(RECORDS_COMPLETED)[-1]
    assert sorted((r["annotator"], r["values"]["rating"]) for r in last["responses"]) == [
        ("ann1", 2),
        ("ann2", 3),
    ]


async def test_an_oversized_completed_record_is_dead_lettered_and_the_pass_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker(max_message_bytes=65_536)
    dataset = argilla.dataset("support")
    big = argilla.add(dataset, loopline_record("big", text="x" * 100_000))
    argilla.respond(big, "ann1", at=ago(60), rating=1)
    small = argilla.add(dataset, loopline_record("small"))
    argilla.respond(small, "ann1", at=ago(50), rating=5)

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    assert completions(broker) == {"small": 1}
    assert {(e["record_id"], e["annotator"]) for e in broker.values(FEEDBACK_RESPONSES)} == {
        ("big", "ann1"),
        ("small", "ann1"),
    }
    [dead] = broker.topics[f"{RECORDS_COMPLETED}.dlq"]
    assert dead.key == b"big"
    assert dead.headers["loopline-error-type"] == "RecordTooLarge"
    assert (
        "over the 49152-byte room under the message limit of 65536"
        in (dead.headers["loopline-error"])
    )
    assert dead.headers["loopline-source-topic"] == RECORDS_COMPLETED
    body = json.loads(dead.value)
    assert (body["record_id"], body["dataset"], body["argilla_record_id"]) == (
        "big",
        "support",
        big.id,
    )
    assert body["bytes"] > 100_000

    # The next pass and a webhook of it neither stop nor dead-letter it again and again.
    await life.reconcile()
    outcome = await life.webhook(argilla.completed_hook(big))
    assert (outcome.code, outcome.body["status"]) == (200, "dead-lettered")
    later = argilla.add(dataset, loopline_record("later"))
    argilla.respond(later, "ann2", rating=4)
    await life.reconcile()
    assert completions(broker) == {"small": 1, "later": 1}
    assert len(broker.topics[f"{RECORDS_COMPLETED}.dlq"]) == 1


async def test_a_completion_is_kept_under_the_limit_by_cutting_raw_judge_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record fit the limit on its way to Argilla; the annotators' answers push its
    completion over it: the judges' raw outputs are cut (shared.message_size's rule)."""
    argilla, broker = FakeArgilla(), FakeBroker(max_message_bytes=65_536)
    dataset = argilla.dataset("support")
    judged = loopline_record("judged").model_copy(
        update={"judgments": [Judgment(rubric="r", judge_model="j", raw_output="y" * 40_000)]}
    )
    record = argilla.add(dataset, judged)
    argilla.respond(record, "ann1", at=ago(20), comment="z" * 20_000)

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    [sent] = broker.values(RECORDS_COMPLETED)
    [judgment] = sent["record"]["judgments"]
    assert judgment["raw_output"].startswith("y" * 2000)
    assert judgment["raw_output"].endswith("[... cut to fit the message limit]")
    assert sent["responses"][0]["values"]["comment"] == "z" * 20_000  # answers are never cut
    assert f"{RECORDS_COMPLETED}.dlq" not in broker.topics


async def test_a_completion_the_broker_refuses_for_its_size_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A topic with a smaller `max.message.bytes` than the configured limit: the broker's own
    refusal is a permanent failure of that record, dead-lettered like the size rule's."""
    argilla, broker = FakeArgilla(), FakeBroker()
    refused = MessageSizeTooLargeError("the broker refuses messages over 10000 bytes")
    broker.refuse = lambda topic, value: refused if len(value) > 10_000 else None
    dataset = argilla.dataset("support")
    big = argilla.add(dataset, loopline_record("big", text="x" * 20_000))
    argilla.respond(big, "ann1", at=ago(60), rating=1)
    small = argilla.add(dataset, loopline_record("small"))
    argilla.respond(small, "ann1", at=ago(50), rating=5)

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    result = await life.reconcile()
    assert completions(broker) == {"small": 1}
    [dead] = broker.topics[f"{RECORDS_COMPLETED}.dlq"]
    assert dead.headers["loopline-error-type"] == "MessageSizeTooLargeError"
    assert "10000 bytes" in dead.headers["loopline-error"]
    assert (result.completed_sent, result.dead_lettered) == (1, 1)


async def test_a_completion_that_cannot_be_sent_for_a_transient_reason_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker unreachable is not the record's fault: the pass fails (the collector retries
    it), nothing is dead-lettered, and the dataset's progress stays where it was."""
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    record = argilla.add(dataset, loopline_record("r1"))
    argilla.respond(record, "ann1", at=ago(30), rating=4)
    broker.refuse = lambda topic, value: KafkaTimeoutError()

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    with pytest.raises(KafkaTimeoutError):
        await life.reconcile()
    assert broker.topics == {}
    assert life.collector.state.progress(dataset) is None

    broker.refuse = None
    await life.reconcile()
    assert completions(broker) == {"r1": 1}
    assert life.collector.state.progress(dataset) is not None
