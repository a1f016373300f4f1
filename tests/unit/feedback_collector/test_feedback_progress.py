"""The collector's progress through Argilla survives restarts: no response is skipped, and a
reconciliation from nothing streams instead of holding every response in memory."""

from __future__ import annotations

import pytest

from services.feedback_collector.state import STATE_TOPIC
from shared.events import FEEDBACK_RESPONSES, RECORDS_COMPLETED
from tests.unit.feedback_collector.fakes import FakeArgilla, FakeBroker, Life, ago, loopline_record


class Crash(Exception):
    """The process dies here (in the test: the pass stops with this exception)."""


def answered(broker: FakeBroker) -> set[tuple[str, str]]:
    return {(e["record_id"], e["annotator"]) for e in broker.values(FEEDBACK_RESPONSES)}


async def test_a_restart_during_a_long_pass_skips_no_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    # Records enough for a pass of several pages; on the last one, an answer given 10 minutes
    # ago (more than the overlap) that no webhook brought out.
    fresh = argilla.add(dataset, loopline_record("fresh"))
    for n in range(5):
        argilla.add(dataset, loopline_record(f"other-{n}"))
    early = argilla.add(dataset, loopline_record("early"))
    argilla.respond(early, "ann1", at=ago(600), rating=4)

    first = Life(argilla, broker, monkeypatch)
    await first.start()

    def crash_on_the_last_page(dataset_id: str, offset: int) -> None:
        # While the pass reads its last page, an annotator answers and the webhook brings
        # that answer out at once; then the process dies before the pass ends.
        if offset >= 6:
            response = argilla.respond(fresh, "ann2", rating=5)
            argilla.on_page = None
            pending.append(argilla.response_hook(fresh, response))
            raise Crash

    pending: list[dict[str, object]] = []
    argilla.on_page = crash_on_the_last_page
    with pytest.raises(Crash):
        await first.reconcile()
    [hook] = pending
    assert (await first.webhook(hook)).code == 200
    assert answered(broker) == {("fresh", "ann2")}

    second = Life(argilla, broker, monkeypatch)
    await second.start()
    await second.reconcile()
    assert answered(broker) >= {("early", "ann1"), ("fresh", "ann2")}


async def test_a_finished_pass_is_not_redone_after_a_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    for n in range(4):
        argilla.respond(argilla.add(dataset, loopline_record(f"r{n}")), "ann1", at=ago(900), x=n)
    first = Life(argilla, broker, monkeypatch)
    await first.start()
    await first.reconcile()
    assert len(broker.values(FEEDBACK_RESPONSES)) == 4

    second = Life(argilla, broker, monkeypatch)
    await second.start()
    await second.reconcile()
    assert len(broker.values(FEEDBACK_RESPONSES)) == 4  # nothing older than the overlap again


async def test_reconciliation_emits_as_it_reads_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """From an empty topic (retention emptied it) everything is read again, a page at a time:
    what a page holds is on the topics before the next page is read."""
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    for n in range(6):
        record = argilla.add(dataset, loopline_record(f"r{n}"))
        argilla.respond(record, "ann1", at=ago(3000 - n), rating=n % 5 + 1)
    on_topic_when_read: dict[int, int] = {}

    def observe(dataset_id: str, offset: int) -> None:
        on_topic_when_read[offset] = len(broker.values(FEEDBACK_RESPONSES))

    argilla.on_page = observe
    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    # Pages of 2: by the time the page at offset 4 is read, the first four answers are out.
    assert on_topic_when_read[0] == 0
    assert on_topic_when_read[2] == 2
    assert on_topic_when_read[4] == 4
    assert len(broker.values(FEEDBACK_RESPONSES)) == 6
    assert {e["record"]["record_id"] for e in broker.values(RECORDS_COMPLETED)} == {
        f"r{n}" for n in range(6)
    }


async def test_records_deleted_during_a_pass_keep_its_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages are read by offset: a record deleted from a page already read shifts the next
    ones, so the pass may miss one. Its progress is not written, and the next pass reads the
    dataset from where the last complete pass left it."""
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    records = [argilla.add(dataset, loopline_record(f"r{n}")) for n in range(6)]
    argilla.respond(records[2], "ann1", at=ago(600), rating=3)  # shifted to offset 1 below

    def delete_the_first(dataset_id: str, offset: int) -> None:
        if offset == 2:
            argilla.records[dataset].pop(0)
            argilla.on_page = None

    life = Life(argilla, broker, monkeypatch)
    await life.start()
    argilla.on_page = delete_the_first
    await life.reconcile()
    assert answered(broker) == set()  # missed by this pass...
    assert life.collector.state.progress(dataset) is None
    await life.reconcile()
    assert answered(broker) == {("r2", "ann1")}  # ...not by the next
    assert life.collector.state.progress(dataset) is not None


async def test_emptied_topics_are_recovered_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention emptied the output topics: the progress is elsewhere, nothing is read again.
    It emptied the state topic too: every dataset is read again from its start, each
    completion announced once more, then never again."""
    argilla, broker = FakeArgilla(), FakeBroker()
    dataset = argilla.dataset("support")
    for n in range(5):
        argilla.respond(argilla.add(dataset, loopline_record(f"r{n}")), "ann1", at=ago(900))
    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    assert len(broker.values(RECORDS_COMPLETED)) == 5

    broker.empty(FEEDBACK_RESPONSES)
    broker.empty(RECORDS_COMPLETED)
    life = Life(argilla, broker, monkeypatch)
    await life.start()
    await life.reconcile()
    assert broker.values(FEEDBACK_RESPONSES) == broker.values(RECORDS_COMPLETED) == []

    broker.empty(STATE_TOPIC)
    for _ in range(2):
        life = Life(argilla, broker, monkeypatch)
        await life.start()
        await life.reconcile()
        assert len(broker.values(FEEDBACK_RESPONSES)) == 5
        assert sorted(e["record"]["record_id"] for e in broker.values(RECORDS_COMPLETED)) == [
            f"r{n}" for n in range(5)
        ]
