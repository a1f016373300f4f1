"""What an export wrote: the files under a directory created or rewritten between two looks.

A file counts as written when its path is new or its (inode, mtime, size) changed; a version
renamed into place from its staging directory counts under its new path. Files that were
written and deleted again in between (staging leftovers) are not seen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

Snapshot = dict[str, tuple[int, int, int]]  # path -> (inode, mtime_ns, size)


def snapshot(root: Path) -> Snapshot:
    found: Snapshot = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # removed while we looked
                continue
            found[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


@dataclass(frozen=True)
class Written:
    files: int
    bytes: int
    parquet: int  # of the files, Parquet ones (the data; the others: manifest, card, report)
    total_bytes: int  # everything under the root afterwards


def written(before: Snapshot, after: Snapshot) -> Written:
    changed = {path: stat for path, stat in after.items() if before.get(path) != stat}
    return Written(
        files=len(changed),
        bytes=sum(size for _, _, size in changed.values()),
        parquet=sum(1 for path in changed if path.endswith(".parquet")),
        total_bytes=sum(size for _, _, size in after.values()),
    )
