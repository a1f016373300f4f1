"""Helpers for the exporter service's tests on FastStream's in-memory test broker: a context
whose retries do not sleep (a hook sees each retry), sample events, what a version holds, and a
directory tree made read-only for a while."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.sample_records import completed, preference, record, response
from services.exporter.reading import load_version
from shared.broker import build_broker
from shared.dead_letters import DeadLetter
from shared.events import DATASETS_EXPORTED, RECORDS_COMPLETED, DatasetExported
from shared.flows import parse_flows
from shared.service import ServiceContext
from shared.settings import ExportSettings, KafkaSettings, Settings


def exporter_context(
    export_dir: Path,
    every_records: int,
    on_retry: Callable[[], Awaitable[None]] | None = None,
    hub: dict[str, Any] | None = None,
    every_s: float = 0,
    kafka: KafkaSettings | None = None,
    **export: Any,
) -> ServiceContext:
    """The exporter's context for one flow, `support`, exporting `sft` every `every_records`
    changed records (and `every_s` after a change). Retries do not sleep: `on_retry` runs
    instead (what a test changes while the service waits, say). `export`: `ExportSettings`;
    `kafka`: the flow set's Kafka settings (its topic prefix)."""
    settings = Settings(
        export=ExportSettings(dir=export_dir, check_interval_s=0.05, **export),
        kafka=kafka or KafkaSettings(),
    )
    broker, dead_letters = build_broker(settings, "exporter")

    async def no_sleep(seconds: float) -> None:
        if on_retry is not None:
            await on_retry()
        await asyncio.sleep(0)

    dead_letters.sleep = no_sleep
    flow_export: dict[str, Any] = {
        "formats": [{"plugin": "sft"}],
        "every_records": every_records,
        "every_s": every_s,
    }
    if hub is not None:
        flow_export["push_to_hub"] = hub
    flows = parse_flows(
        {"flows": {"support": {"publish": {"plugin": "preference"}, "export": flow_export}}},
        "test",
    )
    return ServiceContext(
        name="exporter", settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )


def completed_event(i: int) -> tuple[str, bytes]:
    """A record two annotators answered: (its id, the `records.completed` message)."""
    rec = record(instruction=f"Question {i}?")
    answers = (response(rec, "ann1", preference(5, 2)), response(rec, "ann2", preference(4, 1)))
    return rec.record_id, completed(rec, *answers).to_bytes()


class Outputs:
    """What the exporter wrote to the topics: announcements and dead letters."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.announced: asyncio.Queue[DatasetExported] = asyncio.Queue()
        self.dead_letters: list[DeadLetter] = []

        @broker.subscriber(DATASETS_EXPORTED, group_id="reader")
        async def read(message: KafkaMessage) -> None:
            self.announced.put_nowait(DatasetExported.model_validate_json(message.body))

        @broker.subscriber(f"{RECORDS_COMPLETED}.dlq", group_id="dlq-reader")
        async def read_dlq(message: KafkaMessage) -> None:
            self.dead_letters.append(DeadLetter.from_headers(message.body, message.headers))

    async def next_announcement(self) -> DatasetExported:
        return await asyncio.wait_for(self.announced.get(), timeout=60)


def record_ids(version: Path) -> list[str]:
    """The record ids of every row of every split of a version, sorted (repeats kept)."""
    found = load_version(version)
    return sorted(rid for split in found.values() for rid in split["record_id"])


async def close(context: ServiceContext) -> None:
    for closer in context.closers:
        await closer()


class ReadOnly:
    """Makes a directory and every directory under it read-only, and writable again. Files
    that exist stay writable (as open files are on a disk remounted read-only with `chmod`):
    nothing new can be created, renamed or removed. As root, `chmod` does not stop writes, so
    the directories are made immutable (`chattr +i`) instead."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.locked: list[Path] = []

    def _dirs(self) -> list[Path]:
        return [self.root, *sorted(p for p in self.root.rglob("*") if p.is_dir())]

    def lock(self) -> None:
        for path in self._dirs():
            if os.geteuid() == 0:
                done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
                if done.returncode != 0:
                    self.unlock()
                    pytest.skip(f"cannot make {path} read-only: {done.stderr.decode().strip()}")
            else:
                path.chmod(0o555)
            self.locked.append(path)

    def unlock(self) -> None:
        for path in reversed(self.locked):
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(0o755)
        self.locked = []


@contextlib.contextmanager
def read_only_later(root: Path) -> Iterator[ReadOnly]:
    """A `ReadOnly` for `root`, always made writable again at the end."""
    ro = ReadOnly(root)
    try:
        yield ro
    finally:
        ro.unlock()
