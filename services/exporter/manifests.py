"""What a version's manifest says about its files, in either layout.

A version's `v<N>/manifest.json` lists, per split, its shards (`shards.Shard`: path relative
to the format's directory, sha256, rows, bytes, bucket), in bucket order, a table computed
over all records last; `checksums` maps each of those paths to its sha256, and `buckets` is the
format's bucket count. Versions written before shards were shared (no `shards` key) kept
their files in `v<N>/data/<split>-xxxxx-of-yyyyy-<hash>.parquet`, listed in `checksums`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from services.exporter.shards import Shard

_OLD_FILE = re.compile(r"^data/(?P<split>.+)-\d{5}-of-\d{5}-[0-9a-f]+\.parquet$")

Shards = dict[str, list[Shard]]  # split -> its shards, in order


def shards_of(manifest: Mapping[str, Any]) -> Shards:
    """The shards a manifest lists per split (none for a version in the old layout)."""
    listed: dict[str, list[dict[str, Any]]] = manifest.get("shards") or {}
    return {split: [Shard.from_json(s) for s in entries] for split, entries in listed.items()}


def manifest_files(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per split with rows, its Parquet files, relative to the format's directory."""
    if "shards" in manifest:
        found = {split: [s.path for s in shards] for split, shards in shards_of(manifest).items()}
    else:  # the old layout: each version its own files, in v<N>/data/
        found = {}
        for name in sorted(manifest.get("checksums") or {}):
            match = _OLD_FILE.match(name)
            if match:
                found.setdefault(match["split"], []).append(f"v{manifest['version']}/{name}")
    return {split: files for split, files in found.items() if files}


def merged(base: Shards, new: Shards, rewritten: Iterable[int] | None) -> Shards:
    """A new version's shards: `new` for the buckets in `rewritten` (every bucket with None)
    and for the tables over all records; `base`'s, the previous version's, for the others."""
    again = None if rewritten is None else set(rewritten)
    found: Shards = {}
    for split in sorted(set(base) | set(new)):
        kept = [
            s
            for s in base.get(split, [])
            if again is not None and s.bucket is not None and s.bucket not in again
        ]
        by_bucket = sorted(
            [*kept, *(s for s in new.get(split, []) if s.bucket is not None)],
            key=lambda s: s.bucket if s.bucket is not None else -1,
        )
        summary = [s for s in new.get(split, []) if s.bucket is None]
        found[split] = by_bucket + summary
    return found


def checksums(shards: Shards) -> dict[str, str]:
    return {s.path: s.sha256 for entries in shards.values() for s in entries}


def rows_per_split(shards: Shards, splits: Iterable[str]) -> dict[str, int]:
    return {split: sum(s.rows for s in shards.get(split, [])) for split in splits}


def shards_json(shards: Shards) -> dict[str, list[dict[str, Any]]]:
    return {split: [s.to_json() for s in entries] for split, entries in shards.items()}


def referenced(manifests: Iterable[Mapping[str, Any]]) -> set[str]:
    """The shard paths the manifests use."""
    return {s.path for m in manifests for entries in shards_of(m).values() for s in entries}
