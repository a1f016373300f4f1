"""The exporter waits out trouble around the records, a locked store or a read-only export
directory: nothing it accepted is lost or dead-lettered, and the export resumes. Only a record
that is itself bad goes to the dead-letter topic, alone and once.

On FastStream's in-memory test broker; retries do not sleep (a hook counts them).
"""

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker

from services.exporter.app import register
from services.exporter.store import ExportStore, StoredEvent
from services.exporter.versions import versions
from shared.events import RECORDS_COMPLETED
from tests.unit.exporter.service_helpers import (
    Outputs,
    close,
    completed_event,
    exporter_context,
    read_only_later,
    record_ids,
)

N = 30


@pytest.mark.parametrize(
    "trouble",
    [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.DatabaseError("database disk image is malformed"),  # until restored
    ],
    ids=str,
)
async def test_a_store_in_trouble_is_waited_out_and_only_the_bad_record_is_dead_lettered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trouble: sqlite3.Error
) -> None:
    locked_for = 5  # writes refused before the trouble ends
    writes: list[int] = []
    real_add = ExportStore.add

    def add(self: ExportStore, events: Sequence[StoredEvent], formats: Sequence[str]) -> int:
        writes.append(len(events))
        if len(writes) <= locked_for:
            raise trouble
        return real_add(self, events, formats)

    monkeypatch.setattr(ExportStore, "add", add)
    waiting: list[str | None] = []

    async def on_retry() -> None:
        waiting.append(ctx.dead_letters.waiting_on)

    ctx = exporter_context(tmp_path, every_records=N, on_retry=on_retry)
    out = Outputs(ctx.broker)
    register(ctx)
    published = [completed_event(i) for i in range(N)]
    bodies = [body for _, body in published]
    async with TestKafkaBroker(ctx.broker) as broker:
        # One batch: half the records, a bad message, the other half.
        await broker.publish_batch(
            *bodies[: N // 2], b"not json", *bodies[N // 2 :], topic=RECORDS_COMPLETED
        )
        event = await out.next_announcement()
        await close(ctx)

    # Every accepted record is in the export, once; the store was asked until it answered.
    assert record_ids(Path(event.location)) == sorted(rid for rid, _ in published)
    assert (event.version, event.rows) == (1, N)
    assert writes == [N] * (locked_for + 1)
    assert len(waiting) == locked_for
    assert all(w is not None and str(trouble) in w for w in waiting)
    # The bad message alone went to the dead-letter topic, once, with its reason.
    assert [letter.body for letter in out.dead_letters] == [b"not json"]
    assert out.dead_letters[0].error_type == "ValidationError"
    assert ctx.dead_letters.waiting_on is None


async def test_a_read_only_export_directory_is_waited_out_and_the_export_resumes(
    tmp_path: Path,
) -> None:
    read_only_for = 3  # failed attempts at writing the version
    waiting: list[str | None] = []
    with read_only_later(tmp_path) as read_only:

        async def on_retry() -> None:
            waiting.append(ctx.dead_letters.waiting_on)
            if len(waiting) == read_only_for:
                read_only.unlock()

        ctx = exporter_context(tmp_path, every_records=N, on_retry=on_retry)
        out = Outputs(ctx.broker)
        register(ctx)  # the store's files exist: they stay writable, as open files are
        read_only.lock()
        published = [completed_event(i) for i in range(N)]
        bodies = [body for _, body in published]
        async with TestKafkaBroker(ctx.broker) as broker:
            await broker.publish_batch(*bodies[: N // 2], topic=RECORDS_COMPLETED)
            await broker.publish_batch(*bodies[N // 2 :], topic=RECORDS_COMPLETED)
            event = await out.next_announcement()
            await close(ctx)

    assert record_ids(Path(event.location)) == sorted(rid for rid, _ in published)
    assert versions(tmp_path / "support" / "sft") == [1]
    assert out.dead_letters == []
    assert out.announced.empty()
    assert len(waiting) == read_only_for
    assert all(w is not None and "exporting support" in w for w in waiting)


async def test_a_record_that_breaks_the_write_is_dead_lettered_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = [completed_event(i) for i in range(N)]
    breaker = published[7][0]
    real_add = ExportStore.add

    def add(self: ExportStore, events: Sequence[StoredEvent], formats: Sequence[str]) -> int:
        if any(event.record_id == breaker for event in events):
            raise sqlite3.DataError("string or blob too big")
        return real_add(self, events, formats)

    monkeypatch.setattr(ExportStore, "add", add)
    ctx = exporter_context(tmp_path, every_records=N - 1)
    out = Outputs(ctx.broker)
    register(ctx)
    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(*(body for _, body in published), topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    others = sorted(rid for rid, _ in published if rid != breaker)
    assert record_ids(Path(event.location)) == others
    [letter] = out.dead_letters
    assert letter.body == published[7][1]
    assert letter.error == "DataError: string or blob too big"
    assert letter.attempts == ctx.settings.retry.max_attempts


async def test_the_time_trigger_outlives_a_locked_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked_for = 3  # the timer's checks refused before the lock is released
    checks: list[str] = []
    real_pending = ExportStore.pending

    def pending(self: ExportStore, format_name: str) -> int:
        checks.append(format_name)
        if len(checks) <= locked_for:
            raise sqlite3.OperationalError("database is locked")
        return real_pending(self, format_name)

    ctx = exporter_context(tmp_path, every_records=0, every_s=0.01)
    out = Outputs(ctx.broker)
    register(ctx)
    monkeypatch.setattr(ExportStore, "pending", pending)
    published = [completed_event(i) for i in range(N)]
    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(*(body for _, body in published), topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    assert record_ids(Path(event.location)) == sorted(rid for rid, _ in published)
    assert len(checks) > locked_for
