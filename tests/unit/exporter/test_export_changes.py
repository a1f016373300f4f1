"""The store knows what changed (issue 16): per format line, the buckets with a changed record
since its latest version, cleared only up to what an export read; replays of incremental
versions are byte-identical whatever the worker count; an export that built on a version that
is no longer the latest starts over."""

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from services.exporter import export as export_module
from services.exporter.buckets import bucket_of, stored_hash
from services.exporter.export import format_dir
from services.exporter.reading import load_version, read_version_manifest
from services.exporter.store import HUMAN, ExportStore, StoredEvent
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.test_export_incremental import (
    answered,
    export,
    flows_config,
    keep,
    same_version,
)
from tests.unit.exporter.test_export_versions import files_of


def event(record_id: str, offset: int, body: bytes = b"{}") -> StoredEvent:
    moment = f"2026-01-01T00:00:{offset % 60:02d}+00:00"
    return StoredEvent(record_id, HUMAN, moment, "records.completed", 0, offset, body)


def test_the_store_notes_the_changed_buckets_of_each_format_line(tmp_path: Path) -> None:
    ids = [f"record-{i}" for i in range(40)]
    with ExportStore(tmp_path / "records.sqlite") as store:
        store.add([event(rid, i) for i, rid in enumerate(ids[:20])], ["sft"])
        assert store.line("sft") is None  # not tracked before its first export
        store.track("sft", 8)
        state = store.line("sft")
        assert state is not None and (state.buckets, state.version, state.changed) == (8, 0, [])
        store.exported("sft", 1, state.seq, {0: b"counts"}, every_bucket=True)

        store.add([event(ids[3], 100, b"new"), event(ids[25], 101)], ["sft"])
        store.add([event(ids[3], 100, b"new")], ["sft"])  # redelivered: no change
        changed = store.line("sft")
        assert changed is not None and changed.version == 1
        assert changed.changed == sorted({bucket_of(ids[3], 8), bucket_of(ids[25], 8)})
        assert changed.stats == {0: b"counts"}
        expected = sorted(i for i, rid in enumerate(ids[:26]) if bucket_of(rid, 8) == 5)
        rows = [r for _, batch in store.bucket_batches(8, [5], 2) for r in batch]
        assert [r[0] for r in rows] == sorted(ids[i] for i in expected)  # in record_id order

        store.add([event(ids[30], 102)], ["sft"])  # after that read: not read by that export
        store.exported("sft", 2, changed.seq, {}, every_bucket=False)
        left = store.line("sft")
        assert left is not None and left.changed == [bucket_of(ids[30], 8)]
        assert left.version == 2 and left.stats == {0: b"counts"}

        store.track("sft", 16)  # another bucket count: nothing known any more
        again = store.line("sft")
        assert again is not None and (again.buckets, again.version) == (16, 0)


def test_a_store_written_before_hashes_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    with sqlite3.connect(path) as db:  # the store's records table as issue 15 left it
        db.execute(
            "CREATE TABLE records (record_id TEXT PRIMARY KEY, kind INTEGER NOT NULL, "
            "event_time TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, "
            '"offset" INTEGER NOT NULL, body BLOB NOT NULL)'
        )
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(f"r{i}", HUMAN, "2026-01-01", "records.completed", 0, i, b"{}") for i in range(9)],
        )
    with ExportStore(path) as store:
        store.use_buckets(4)
        found = {
            r[0]: b for b in range(4) for _, batch in store.bucket_batches(4, [b]) for r in batch
        }
    assert found == {f"r{i}": bucket_of(f"r{i}", 4) for i in range(9)}
    with sqlite3.connect(path) as db:
        hashes = dict(db.execute("SELECT record_id, hash FROM records").fetchall())
    assert hashes == {f"r{i}": stored_hash(f"r{i}") for i in range(9)}


def history(root: Path, **options: Any) -> Path:
    """The same records and exports as every other call: five versions, most incremental."""
    settings = Settings(stack_dir=root, export=ExportSettings(buckets=8, **options))
    flows = flows_config("sft", "eval")
    steps = [
        [answered(i)[1] for i in range(60)],
        [answered(i, best=2, minute=3)[1] for i in (1, 2)],
        [answered(i)[1] for i in range(60, 64)],
        [answered(5, best=2, minute=4)[1]],
        [answered(i, best=1, minute=8)[1] for i in (1, 60)],
    ]
    offset = 0
    for bodies in steps:
        keep(settings, flows, bodies, first=offset)
        offset += len(bodies)
        assert all(r.created for r in export(settings, flows).values())
    return root / "exports" / "support"


def test_replays_of_incremental_versions_are_byte_identical_whatever_the_workers(
    tmp_path: Path,
) -> None:
    first = history(tmp_path / "first")
    again = history(tmp_path / "again")
    workers = history(tmp_path / "workers", workers=2, parallel_from=0, batch_rows=3)
    one = history(tmp_path / "one", batch_rows=3)
    for name in ("sft", "eval"):
        a, b = files_of(first / name), files_of(again / name)
        assert a.keys() == b.keys() and a == b, name  # shards, manifests, reports, card
        assert sorted(p for p in a if p.endswith("manifest.json")) == [
            f"v{n}/manifest.json" for n in range(1, 6)
        ]
        c, d = files_of(workers / name), files_of(one / name)
        assert c.keys() == d.keys() and c == d, name


def test_an_export_that_built_on_an_older_version_starts_over_from_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=8))
    flows = flows_config("sft")
    keep(settings, flows, [answered(i)[1] for i in range(50)])
    export(settings, flows)
    keep(settings, flows, [answered(3, best=2, minute=5)[1]], first=50)

    real_finish = export_module._finish
    finishes: list[str] = []

    def finish(*args: Any) -> Any:
        if not finishes:  # meanwhile, another export of more changes publishes v2
            finishes.append("other")
            keep(settings, flows, [answered(i, best=2, minute=6)[1] for i in (20, 40)], first=51)
            assert [r.version for r in export(settings, flows).values()] == [2]
        finishes.append("this")
        return real_finish(*args)

    monkeypatch.setattr(export_module, "_finish", finish)
    [result] = export(settings, flows).values()
    # The other export's finish, then this one's twice: it found v2 there, and started over.
    assert finishes == ["other", "this", "this", "this"]
    assert (result.created, result.version) == (False, 2)  # v2 holds its changes already
    root = format_dir(settings, "support", "sft")
    assert isinstance(root, Path)
    rows = load_version(root / "v2")
    best = {
        r["messages"][0]["content"]: r["messages"][-1]["content"]
        for split in rows.values()
        for r in split
    }
    assert [best[f"task {i}"] for i in (3, 20, 40, 4)] == [
        "weak answer 3",
        "weak answer 20",
        "weak answer 40",
        "good answer 4",
    ]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("v")) == ["v1", "v2"]


def test_formats_with_other_bucket_counts_are_read_in_a_pass_each(tmp_path: Path) -> None:
    both = flows_config("sft", "dpo")
    four = Settings(stack_dir=tmp_path / "a", export=ExportSettings(buckets=4))
    eight = four.model_copy(update={"export": ExportSettings(buckets=8)})
    keep(four, both, [answered(i)[1] for i in range(30)])
    export(four, flows_config("sft"))  # sft's bucket count: 4, kept for good
    keep(four, both, [answered(3, best=2, minute=2)[1]], first=30)
    results = export(eight, both)  # dpo's first version: 8
    root = tmp_path / "a" / "exports" / "support"
    assert read_version_manifest(root / "sft" / "v2")["buckets"] == 4
    assert read_version_manifest(root / "dpo" / "v1")["buckets"] == 8
    assert results["sft"].records_read < 30 and results["dpo"].records_read == 30

    fresh = Settings(stack_dir=tmp_path / "b", export=ExportSettings(buckets=4))
    keep(fresh, both, [answered(i)[1] for i in range(30)])
    keep(fresh, both, [answered(3, best=2, minute=2)[1]], first=30)
    export(fresh, flows_config("sft"))
    export(fresh.model_copy(update={"export": ExportSettings(buckets=8)}), flows_config("dpo"))
    other = tmp_path / "b" / "exports" / "support"
    same_version(root / "sft" / "v2", other / "sft" / "v1")
    same_version(root / "dpo" / "v1", other / "dpo" / "v1")
