"""The collector's state topic: what it holds, how it is read back, and when it is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.feedback_collector.state import STATE_TOPIC, CollectorState, StateMessage
from tests.unit.feedback_collector.fakes import (
    FakeArgilla,
    FakeBroker,
    Life,
    ago,
    loopline_record,
)

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 2, 1, tzinfo=UTC)


def _message(key: str, value: dict[str, str] | None) -> StateMessage:
    return StateMessage(key.encode(), None if value is None else json.dumps(value).encode())


async def _nowhere(topic: str, key: bytes, value: bytes) -> None:
    raise AssertionError("loading writes nothing")


def test_the_last_value_of_each_key_wins_and_tombstones_forget() -> None:
    state = CollectorState(_nowhere)
    state.load(
        [
            _message("progress/d1", {"through": T1.isoformat()}),
            _message("progress/d2", {"through": T1.isoformat()}),
            _message("completed/d1/r1", {"responses": "aaaa", "outcome": "sent"}),
            _message("progress/d1", {"through": T2.isoformat()}),
            _message("progress/d2", None),
            _message("completed/d1/r1", {"responses": "bbbb", "outcome": "dead-lettered"}),
            _message("completed/d1/r2", {"responses": "cccc"}),
            _message("completed/d1/r2", None),
            _message("progress/d3", {"through": "not a time"}),  # skipped, logged
            _message("something-else/x", {"through": T1.isoformat()}),  # skipped, logged
        ]
    )
    assert (state.progress("d1"), state.progress("d2"), state.progress("d3")) == (T2, None, None)
    announced = state.announced("d1", "r1")
    assert announced is not None
    assert (announced.responses, announced.outcome) == ("bbbb", "dead-lettered")
    assert state.announced("d1", "r2") is None
    assert state.announced("d2", "r1") is None


async def test_progress_is_written_per_dataset_once_its_pass_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    first, second = argilla.dataset("support"), argilla.dataset("support", "admin-bob")
    argilla.respond(argilla.add(first, loopline_record("a")), "ann1", at=ago(60), rating=3)
    argilla.respond(argilla.add(second, loopline_record("b")), "bob", at=ago(60), rating=3)
    life = Life(argilla, broker, monkeypatch)
    life.collector.watched = life.collector.reconciler.watched = type(life.collector.watched)(
        frozenset({("admin", "support"), ("admin-bob", "support")})
    )
    await life.start()
    before = datetime.now(UTC)
    await life.reconcile()
    progress = {
        m.key: json.loads(m.value)
        for m in broker.topics[STATE_TOPIC]
        if m.key is not None and m.key.startswith(b"p")
    }
    assert set(progress) == {f"progress/{first}".encode(), f"progress/{second}".encode()}
    for entry in progress.values():
        assert datetime.fromisoformat(entry["through"]) >= before  # the pass's start
    # The state topic's writes come after the events they cover.
    order = sorted(_all(broker))
    last_event = max(i for i, topic, _ in order if topic != STATE_TOPIC)
    first_progress = min(i for i, topic, key in order if key.startswith(b"progress/"))
    assert first_progress < last_event  # one dataset's progress before the other's events
    assert [k for _, t, k in order if t == STATE_TOPIC][-1].startswith(b"progress/")


def _all(broker: FakeBroker) -> list[tuple[int, str, bytes]]:
    """(global order, topic, key) of every message, from the fake's publish order."""
    return [(m.order, m.topic, m.key or b"") for log in broker.topics.values() for m in log]


async def test_webhooks_wait_until_the_state_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    argilla, broker = FakeArgilla(), FakeBroker()
    record = argilla.add(argilla.dataset("support"), loopline_record("r1"))
    argilla.respond(record, "ann1", rating=2)
    life = Life(argilla, broker, monkeypatch)
    early = await life.webhook(argilla.completed_hook(record))
    assert early.code == 503 and "starting" in early.body["detail"]
    assert broker.topics == {}
    await life.start()
    assert (await life.webhook(argilla.completed_hook(record))).body["status"] == "sent"
