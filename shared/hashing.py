"""One stable hash of a record id: where a record falls in [0, 1), the same in every process."""

from __future__ import annotations

import hashlib


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts` (e.g. a seed and a record id), joined by NUL bytes.

    Used to sample records (a retried record is sampled the same way) and to put a record in
    the same dataset split in every version.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
