"""Which bucket a record falls in, and how many buckets a format's rows are spread over.

A format's rows live in shards, one per (split, bucket), where a record's bucket is a stable
hash of its id: the first 8 bytes of the BLAKE2b digest of its UTF-8 bytes, read big-endian,
modulo the bucket count (never Python's `hash`, which changes from process to process). The
count is a power of two, so the bucket is the hash's low bits, and it is fixed for a format
once its first version is written (every manifest records it).
"""

from __future__ import annotations

import hashlib

# Records a bucket should hold at the size a flow is expected to reach: large enough that
# Parquet files stay few and efficient, small enough that a version rewrites little.
TARGET_RECORDS = 16_384
MAX_BUCKETS = 65_536


def record_hash(record_id: str) -> int:
    """The record's 64-bit hash, as an unsigned integer."""
    return int.from_bytes(hashlib.blake2b(record_id.encode()).digest()[:8], "big")


def stored_hash(record_id: str) -> int:
    """`record_hash` as the signed 64-bit integer SQLite keeps: the same low bits, so
    `stored_hash(r) & (buckets - 1) == bucket_of(r, buckets)`."""
    value = record_hash(record_id)
    return value - (1 << 64) if value >= 1 << 63 else value


def bucket_of(record_id: str, buckets: int) -> int:
    return record_hash(record_id) % buckets


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def choose_buckets(records: int, expected: int, override: int | None = None) -> int:
    """The bucket count of a format's first version: `override` when given, else the power of
    two that puts about `TARGET_RECORDS` records in a bucket at the larger of `records` (the
    store's size now) and `expected` (what the flow is expected to grow to)."""
    if override is not None:
        if not is_power_of_two(override):
            raise ValueError(f"a bucket count must be a power of two, got {override}")
        return override
    buckets = 1
    while buckets * TARGET_RECORDS < max(records, expected) and buckets < MAX_BUCKETS:
        buckets *= 2
    return buckets
