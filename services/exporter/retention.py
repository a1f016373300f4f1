"""Retention: which versions of a format stay, and removing the shards no version needs.

With `ExportSettings.keep_versions` and/or `keep_for_s` set, a version that is neither one of
the newest `keep_versions` nor younger than `keep_for_s` (by its manifest's time) is retired:
a note of the shards it used is left in `.retired/`, then its manifest and its directory are
deleted, and the card no longer lists it (`storage.VersionStorage.retire`). The latest
version is always kept. A shard is removed once no remaining version lists it and no version
retired less than `retention_grace_s` ago did: a reader that read a retired version's manifest
(or the card) just before can still read its shards meanwhile. Shards that no version ever
listed (a crash between the shards and the manifest) are removed at once. Everything happens
under the format's lock, so no export publishes meanwhile. It runs at the end of each export
and, between exports, from the exporter service's timer (`retain_flow`): a flow that makes no
new version still sees its versions age out and its retired shards go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.exporter.manifests import manifest_files, referenced
from services.exporter.storage import VersionStorage, versions_of
from shared.settings import ExportSettings, Settings

log = logging.getLogger("loopline.exporter")


@dataclass(frozen=True)
class Retention:
    keep_versions: int | None = None
    keep_for_s: float | None = None
    grace_s: float = 3600.0

    @classmethod
    def of(cls, settings: ExportSettings) -> Retention:
        return cls(settings.keep_versions, settings.keep_for_s, settings.retention_grace_s)

    @property
    def set(self) -> bool:
        """Whether any version can expire (`keep_versions` or `keep_for_s` is set)."""
        return self.keep_versions is not None or self.keep_for_s is not None

    def expired(self, storage: VersionStorage, now: float) -> list[int]:
        """The versions to retire: never the latest; none when nothing is set."""
        if not self.set:
            return []
        numbers = storage.numbers()
        newest = set(numbers[-self.keep_versions :]) if self.keep_versions is not None else set()
        found: list[int] = []
        for number in numbers[:-1]:
            if number in newest:
                continue
            if self.keep_for_s is not None and now - storage.published_at(number) < self.keep_for_s:
                continue
            found.append(number)
        return found


@dataclass(frozen=True)
class Removed:
    versions: list[int]
    shards: list[str]


def apply_retention(
    storage: VersionStorage, retention: Retention, now: float | None = None, sweep: bool = True
) -> Removed:
    """Retire the expired versions and remove the shards nothing needs (see the module's
    docstring); the caller holds the format's lock. Without `sweep`, the shards are looked at
    only when a version expired or a retired one's grace ended (between exports: no crash
    left shards no manifest lists, and reading every manifest each time would be waste)."""
    now = time.time() if now is None else now
    expired = retention.expired(storage, now)
    for number in expired:
        files = manifest_files(storage.read_manifest(number))
        storage.retire(
            number,
            {
                "version": number,
                "retired_at": now,
                "files": sorted(f for names in files.values() for f in names),
            },
        )
        log.info("%s: retired v%d", storage.name, number)
    if expired:
        storage.refresh_card()
    notes = storage.retired()
    ended = [note for note in notes if now - float(note["retired_at"]) >= retention.grace_s]
    if not (sweep or expired or ended):
        return Removed(expired, [])
    needed = referenced(storage.manifests())
    for note in notes:
        if note not in ended:
            needed.update(note["files"])
    removed = [path for path in storage.shard_paths() if path not in needed]
    for path in removed:
        storage.remove_shard(path)
    for note in ended:
        storage.forget_retired(int(note["version"]))
    if removed:
        log.info("%s: removed %d shard(s) no version uses", storage.name, len(removed))
    return Removed(expired, removed)


def retain_flow(settings: Settings, flow: str, formats: Sequence[str]) -> dict[str, Removed]:
    """Retention of a flow's formats between exports, each under its lock (blocking: run it in
    a worker thread); nothing when no retention is set."""
    retention = Retention.of(settings.export)
    if not retention.set:
        return {}
    found: dict[str, Removed] = {}
    for name in formats:
        storage = versions_of(settings, flow, name)
        if not storage.numbers():
            continue
        with storage.lock():
            found[name] = apply_retention(storage, retention, sweep=False)
    return found
