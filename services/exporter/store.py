"""The exporter's record store: the newest accepted event per record, on disk (SQLite).

One file per flow (`<store dir>/<flow>/records.sqlite`, on local disk: `ExportSettings.stores`,
by default the export dir itself). Each row is one record_id with the event that decides it: a
`records.completed` event (people answered) always beats an auto-accepted `records.judged` one;
between events of the same kind the newer one wins (event time, then topic position). Upserts
are idempotent, so redeliveries and replays from the start of the topics leave the same rows.
The store also keeps, per topic partition, the last offset it has seen (the manifest's "source
offsets") and how many records changed since the last export of each format (the count
trigger), and the newest version of each format announced on `datasets.exported` (a version
made but not yet announced, say when the process died in between, is announced at the next
start). Each record also keeps a 64-bit hash of its id (`buckets.stored_hash`), so that an
export reads the records of one bucket of a format (`bucket_batches`), in record_id order and
in batches: memory does not grow with the number of records.

Per *format line* (one of the flow's formats) the store knows what changed since its latest
version (`LineState`): the line's bucket count, the version the rest of its state describes,
the buckets holding a record changed since (noted by `add`, each change stamped with a sequence
number so that an export clears only what it read), and each bucket's counts for the curation
report (`CurationStats`, stored as bytes) as of that version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from services.exporter.buckets import is_power_of_two, stored_hash

HUMAN = 2  # records.completed
AUTO = 1  # records.judged, accepted by the flow's auto_accept rule

# Events per transaction, for those who can choose. Each commit writes every record_id index
# page its events touched, and random ids touch nearly all of them once the store is large:
# fewer, larger commits write far less (300k events: 4.7 s in batches of 2000, 7.3 s of 500).
WRITE_BATCH = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    event_time TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    body BLOB NOT NULL,
    hash INTEGER
);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS changes (
    format TEXT PRIMARY KEY,
    pending INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS announced (
    format TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    format TEXT PRIMARY KEY,
    buckets INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dirty (
    format TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (format, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_stats (
    format TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    stats BLOB NOT NULL,
    PRIMARY KEY (format, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequence (value INTEGER NOT NULL);
INSERT INTO sequence (value) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sequence);
"""

_DIRTY = """
INSERT INTO dirty (format, bucket, seq) VALUES (?, ?, ?)
ON CONFLICT (format, bucket) DO UPDATE SET seq = excluded.seq
"""

# Replace the row only when the incoming event outranks it: kind, then time, then position.
_UPSERT = """
INSERT INTO records (record_id, kind, event_time, topic, partition, "offset", body, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (record_id) DO UPDATE SET
    kind = excluded.kind, event_time = excluded.event_time, topic = excluded.topic,
    partition = excluded.partition, "offset" = excluded."offset", body = excluded.body
WHERE (excluded.kind, excluded.event_time, excluded.topic, excluded.partition, excluded."offset")
    > (records.kind, records.event_time, records.topic, records.partition, records."offset")
    AND excluded.body != records.body
"""


class StoredEvent(NamedTuple):
    """One consumed event to keep: which record, what kind, when, from where, and its bytes."""

    record_id: str
    kind: int
    event_time: str  # ISO 8601 UTC: sorts as text
    topic: str
    partition: int
    offset: int
    body: bytes


class StoredRow(NamedTuple):
    """One kept record as an export reads it."""

    record_id: str
    kind: int
    event_time: str
    body: bytes


# A StoredRow's fields as SQLite returns them: a plain tuple travels to worker processes
# several times faster than a named one (`StoredRow._make` names it where it is used).
RawRow = tuple[str, int, str, bytes]


@dataclass(frozen=True)
class LineState:
    """What the store knows of a format line: its bucket count; the version the rest describes
    (0: none); the buckets changed since, and the sequence number up to which that is told;
    each bucket's stored counts (bytes, `CurationStats.to_bytes`) as of the version."""

    buckets: int
    version: int
    changed: list[int]
    seq: int
    stats: dict[int, bytes]


class ExportStore:
    """The accepted records of one flow.

    A connection may move between threads (the service writes from worker threads) but must
    be used by one at a time; readers that run alongside open their own (WAL snapshots).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        # Events are ~1-3 KB: 16 KiB pages waste less space around them than the default
        # 4 KiB and make consuming ~30% faster. Only a new file takes it (before WAL is on).
        self._db.execute("PRAGMA page_size=16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # 8 MB of page cache (default 2 MB): the record_id index stays in memory longer.
        self._db.execute("PRAGMA cache_size=-8192")
        # Checkpoint the WAL every ~80 MB rather than every 4 MB: fewer fsyncs while consuming.
        self._db.execute("PRAGMA wal_autocheckpoint=5000")
        self._db.executescript(_SCHEMA)
        self._add_hashes()

    def _add_hashes(self) -> None:
        """A store written before records kept their hash gets it, once."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        if "hash" in columns:
            return
        self._db.create_function("loopline_hash", 1, stored_hash, deterministic=True)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE records ADD COLUMN hash INTEGER")
            self._db.execute("UPDATE records SET hash = loopline_hash(record_id)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ExportStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, events: Sequence[StoredEvent], formats: Sequence[str]) -> int:
        """Keep `events` in one transaction; returns how many rows changed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # One statement per event tells which changed a row (as fast as executemany).
            cursor = db.cursor()
            hashes: list[int] = []  # of the records changed
            for e in events:
                record_hash = stored_hash(e.record_id)
                cursor.execute(_UPSERT, (*e, record_hash))  # the statement's order, then hash
                if cursor.rowcount > 0:
                    hashes.append(record_hash)
            changed = len(hashes)
            if hashes:
                self._note_changes(hashes)
            last: dict[tuple[str, int], int] = {}
            for e in events:
                key = (e.topic, e.partition)
                last[key] = max(last.get(key, -1), e.offset)
            db.executemany(
                'INSERT INTO offsets (topic, partition, "offset") VALUES (?, ?, ?) '
                'ON CONFLICT (topic, partition) DO UPDATE SET "offset" = excluded."offset" '
                'WHERE excluded."offset" > offsets."offset"',
                [(topic, partition, offset) for (topic, partition), offset in last.items()],
            )
            if changed:
                db.executemany(
                    "INSERT INTO changes (format, pending) VALUES (?, ?) ON CONFLICT (format) "
                    "DO UPDATE SET pending = pending + excluded.pending",
                    [(name, changed) for name in formats],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return changed

    def _note_changes(self, hashes: Sequence[int]) -> None:
        """In `add`'s transaction: the buckets of these records changed, for every format
        line, at a new sequence number."""
        db = self._db
        db.execute("UPDATE sequence SET value = value + 1")
        seq = int(db.execute("SELECT value FROM sequence").fetchone()[0])
        for format_name, buckets in db.execute("SELECT format, buckets FROM lines").fetchall():
            changed = sorted({h & (int(buckets) - 1) for h in hashes})
            db.executemany(_DIRTY, [(format_name, bucket, seq) for bucket in changed])

    def pending(self, format_name: str) -> int:
        """Records changed since `format_name` was last exported."""
        row = self._db.execute(
            "SELECT pending FROM changes WHERE format = ?", (format_name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def mark_exported(self, format_name: str, pending_seen: int) -> None:
        """An export that saw `pending_seen` changes is done: take them off the counter."""
        self._db.execute(
            "UPDATE changes SET pending = MAX(0, pending - ?) WHERE format = ?",
            (pending_seen, format_name),
        )

    def announced(self, format_name: str) -> int | None:
        """The newest version of `format_name` announced (and pushed), every older one too;
        None before the format's first export with this store."""
        row = self._db.execute(
            "SELECT version FROM announced WHERE format = ?", (format_name,)
        ).fetchone()
        return int(row[0]) if row else None

    def start_announcing(self, format_name: str, latest: int) -> None:
        """Before a format's first export: what is on disk already (`latest`) counts as
        announced, so only versions made from now on are announced (once)."""
        self._db.execute(
            "INSERT INTO announced (format, version) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (format_name, latest),
        )

    def mark_announced(self, format_name: str, version: int) -> None:
        self._db.execute(
            "INSERT INTO announced (format, version) VALUES (?, ?) ON CONFLICT (format) "
            "DO UPDATE SET version = MAX(version, excluded.version)",
            (format_name, version),
        )

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def offsets(self) -> dict[str, dict[str, int]]:
        """The last offset seen per topic and partition (partitions as strings, for JSON)."""
        found: dict[str, dict[str, int]] = {}
        query = 'SELECT topic, partition, "offset" FROM offsets ORDER BY topic, partition'
        for topic, partition, offset in self._db.execute(query):
            found.setdefault(topic, {})[str(partition)] = int(offset)
        return found

    def use_buckets(self, buckets: int) -> None:
        """Index the records by their bucket among `buckets` (a power of two), in record_id
        order within a bucket: `bucket_batches` reads one bucket without a sort."""
        self._db.execute(
            f"CREATE INDEX IF NOT EXISTS records_bucket_{_mask(buckets) + 1} "
            f"ON records((hash & {_mask(buckets)}), record_id)"
        )

    def bucket_batches(
        self, buckets: int, which: Sequence[int], size: int = 1000
    ) -> Iterator[tuple[int, list[RawRow]]]:
        """The rows of each bucket in `which` (of `buckets`, as `use_buckets` indexed them), in
        record_id order, `size` at a time with their bucket, read inside one snapshot."""
        query = (
            "SELECT record_id, kind, event_time, body FROM records "
            f"WHERE (hash & {_mask(buckets)}) = ? ORDER BY record_id"
        )
        db = self._db
        db.execute("BEGIN")
        try:
            for bucket in which:
                cursor = db.execute(query, (bucket,))
                while chunk := cursor.fetchmany(size):
                    yield bucket, chunk
        finally:
            db.execute("COMMIT")

    def count_buckets(self, buckets: int, which: Sequence[int]) -> int:
        """The records in the buckets `which` of `buckets` (as `use_buckets` indexed them)."""
        query = f"SELECT COUNT(*) FROM records WHERE (hash & {_mask(buckets)}) = ?"
        return sum(int(self._db.execute(query, (b,)).fetchone()[0]) for b in which)

    def track(self, format_name: str, buckets: int) -> None:
        """From now on, note the buckets (of `buckets`) of `format_name` that change. A line
        that had another bucket count starts over (version 0: nothing is known)."""
        self.use_buckets(buckets)
        self._db.execute(
            "INSERT INTO lines (format, buckets, version) VALUES (?, ?, 0) "
            "ON CONFLICT (format) DO UPDATE SET buckets = excluded.buckets, "
            "version = CASE WHEN lines.buckets = excluded.buckets THEN lines.version ELSE 0 END",
            (format_name, buckets),
        )

    def line(self, format_name: str) -> LineState | None:
        """The format line's state (`track` first), read inside one snapshot."""
        db = self._db
        db.execute("BEGIN")
        try:
            found = db.execute(
                "SELECT buckets, version FROM lines WHERE format = ?", (format_name,)
            ).fetchone()
            if found is None:
                return None
            seq = int(db.execute("SELECT value FROM sequence").fetchone()[0])
            changed = db.execute(
                "SELECT bucket FROM dirty WHERE format = ? ORDER BY bucket", (format_name,)
            ).fetchall()
            stats = db.execute(
                "SELECT bucket, stats FROM bucket_stats WHERE format = ? ORDER BY bucket",
                (format_name,),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        return LineState(
            buckets=int(found[0]),
            version=int(found[1]),
            changed=[int(b) for (b,) in changed],
            seq=seq,
            stats={int(b): bytes(blob) for b, blob in stats},
        )

    def exported(
        self,
        format_name: str,
        version: int,
        seq: int,
        stats: Mapping[int, bytes],
        every_bucket: bool,
    ) -> None:
        """The format line's version `version` (0: none) was made from the changes up to
        `seq`: they are no longer pending; `stats` are the counts of the buckets it read (of
        all of them with `every_bucket`: the others have no records)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE lines SET version = ? WHERE format = ?", (version, format_name))
            db.execute("DELETE FROM dirty WHERE format = ? AND seq <= ?", (format_name, seq))
            if every_bucket:
                db.execute("DELETE FROM bucket_stats WHERE format = ?", (format_name,))
            db.executemany(
                "INSERT INTO bucket_stats (format, bucket, stats) VALUES (?, ?, ?) "
                "ON CONFLICT (format, bucket) DO UPDATE SET stats = excluded.stats",
                [(format_name, bucket, blob) for bucket, blob in sorted(stats.items())],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def batches(self, size: int = 1000) -> Iterator[list[RawRow]]:
        """Every row in record_id order, `size` at a time, read inside one snapshot."""
        db = self._db
        db.execute("BEGIN")
        try:
            cursor = db.execute(
                "SELECT record_id, kind, event_time, body FROM records ORDER BY record_id"
            )
            while chunk := cursor.fetchmany(size):
                yield chunk
        finally:
            db.execute("COMMIT")


def _mask(buckets: int) -> int:
    """The bits of a record's hash that are its bucket (written into SQL: checked here)."""
    if not is_power_of_two(buckets):
        raise ValueError(f"a bucket count must be a power of two, got {buckets}")
    return buckets - 1
