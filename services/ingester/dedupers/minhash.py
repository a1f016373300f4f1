"""The `minhash` near-duplicate detector: MinHash signatures and LSH banding.

`MinHashNearDuplicates` is the built-in `loopline.dedupers` plugin (`minhash`). A text becomes the
set of its word shingles (runs of `shingle_size` words of the lower-cased, whitespace-normalised
text; a shorter text is one shingle of all its words). Each shingle is hashed once to a 64-bit
integer with BLAKE2b; `num_perm` random hash functions `(a * x + b) mod p`, with `p` the Mersenne
prime 2**61 - 1, map those integers, and the signature holds each function's minimum. Two texts'
signatures agree in a position with probability equal to the Jaccard similarity of their shingle
sets.

The signature is cut into `bands` bands of `rows` positions; texts that share any band are
candidates (found in O(1) per band through a dict), and a candidate is a near-duplicate when the
fraction of agreeing positions of the whole signature reaches `threshold`. `rows` is the largest
that still makes a pair at exactly the threshold a candidate with probability >= 99%.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.ingester.dedupers.base import NearDuplicateDetector

__all__ = ["MinHashNearDuplicates", "choose_bands", "shingles"]

_MERSENNE_BITS = 61
_PRIME = (1 << _MERSENNE_BITS) - 1  # 2**61 - 1
_P = np.uint64(_PRIME)
_LOW31 = np.uint64((1 << 31) - 1)
_LOW30 = np.uint64((1 << 30) - 1)
_U31 = np.uint64(31)
_U30 = np.uint64(30)
_U61 = np.uint64(_MERSENNE_BITS)
_ONE = np.uint64(1)

# The least probability that a pair exactly at the threshold shares a band.
CANDIDATE_PROBABILITY = 0.99

Signature = npt.NDArray[np.uint64]


def shingles(text: str, shingle_size: int) -> list[str]:
    """The distinct word shingles of `text`, lower-cased and whitespace-normalised, in order.

    A text of fewer than `shingle_size` words (the empty text included) is a single shingle.
    """
    words = text.lower().split()
    if len(words) <= shingle_size:
        return [" ".join(words)]
    grams = (" ".join(words[i : i + shingle_size]) for i in range(len(words) - shingle_size + 1))
    return list(dict.fromkeys(grams))


def choose_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """`(bands, rows)`: the most selective banding (largest `rows`, `bands * rows <= num_perm`)
    under which a pair of similarity `threshold` shares a band with probability >=
    `CANDIDATE_PROBABILITY`."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        miss = (1.0 - threshold**rows) ** bands
        if 1.0 - miss >= CANDIDATE_PROBABILITY:
            return bands, rows
    return num_perm, 1


def _hash_shingles(grams: list[str]) -> npt.NDArray[np.uint64]:
    """Each shingle as a 64-bit integer, reduced mod p (so below 2**61)."""
    raw = b"".join(hashlib.blake2b(gram.encode(), digest_size=8).digest() for gram in grams)
    values = np.frombuffer(raw, dtype="<u8")
    values = (values & _P) + (values >> _U61)
    return np.where(values >= _P, values - _P, values)


@dataclass(slots=True)
class _Entry:
    key: str
    signature: Signature
    bands: list[bytes]


class MinHashNearDuplicates(NearDuplicateDetector):
    """Finds texts whose estimated Jaccard similarity to a recent one reaches `threshold`
    (`loopline.dedupers: minhash`).

    Remembers at most `window` texts (the oldest is forgotten first); a text found to be a
    near-duplicate is not remembered. Results depend only on the inputs and `seed`.
    """

    def __init__(
        self,
        threshold: float = 0.85,
        num_perm: int = 128,
        shingle_size: int = 5,
        window: int = 100_000,
        seed: int = 1,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"`threshold` must be a number, got {threshold!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1], got {threshold}")
        for name, value, least in (
            ("num_perm", num_perm, 1),
            ("shingle_size", shingle_size, 1),
            ("window", window, 1),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}")
        self.threshold = float(threshold)
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.window = window
        self.seed = seed
        self.bands, self.rows = choose_bands(self.threshold, num_perm)
        # The least number of agreeing positions that makes a near-duplicate.
        self._min_agree = math.ceil(self.threshold * num_perm - 1e-9)

        rng = np.random.default_rng(seed)
        a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
        # a = a_hi * 2**31 + a_lo, so every partial product below fits in 64 bits.
        self._a_hi = (a >> _U31)[:, np.newaxis]
        self._a_lo = (a & _LOW31)[:, np.newaxis]
        self._b = b[:, np.newaxis]

        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._by_key: dict[str, int] = {}
        self._buckets: list[dict[bytes, set[int]]] = [{} for _ in range(self.bands)]
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    def signature(self, text: str) -> Signature:
        """The MinHash signature of `text`: `num_perm` minima, each below 2**61 - 1."""
        x = _hash_shingles(shingles(text, self.shingle_size))[np.newaxis, :]
        x_hi = x >> _U31  # < 2**30
        x_lo = x & _LOW31  # < 2**31
        # a * x = hh * 2**62 + mid * 2**31 + ll, and 2**62 = 2 (mod p), 2**61 = 1 (mod p), so
        # a * x + b = 2 * hh + (mid >> 30) + (mid & (2**30 - 1)) * 2**31 + ll + b (mod p), where
        # every term and the sum (< 5 * 2**61 + 2**32) fit in 64 bits. In place, for speed.
        total = self._a_hi * x_hi  # hh < 2**60
        total <<= _ONE
        total += self._b
        mid = self._a_hi * x_lo
        mid += self._a_lo * x_hi  # < 2**62
        total += mid >> _U30
        mid &= _LOW30
        mid <<= _U31
        total += mid
        total += self._a_lo * x_lo  # ll < 2**62
        for _ in range(2):  # x = hi * 2**61 + lo = hi + lo (mod p); twice leaves x <= p
            high = total >> _U61
            total &= _P
            total += high
        total = np.where(total >= _P, total - _P, total)
        signature: Signature = total.min(axis=1)
        return signature

    def similarity(self, first: str, second: str) -> float:
        """The estimated Jaccard similarity of two texts' shingle sets."""
        agree = np.count_nonzero(self.signature(first) == self.signature(second))
        return float(agree) / self.num_perm

    def check_and_add(self, key: str, text: str) -> str | None:
        """The key of the most similar remembered text whose estimated similarity to `text` is
        at least `threshold`; else `None`, and `text` is remembered under `key` (replacing an
        earlier text remembered under the same key)."""
        signature = self.signature(text)
        bands = [
            signature[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)
        ]
        candidates: set[int] = set()
        for bucket, band in zip(self._buckets, bands, strict=True):
            found = bucket.get(band)
            if found:
                candidates.update(found)
        best: tuple[int, int] | None = None  # (agreeing positions, -entry id)
        for entry_id in candidates:
            agree = int(np.count_nonzero(self._entries[entry_id].signature == signature))
            if agree >= self._min_agree and (best is None or (agree, -entry_id) > best):
                best = (agree, -entry_id)
        if best is not None:
            return self._entries[-best[1]].key
        self._add(key, signature, bands)
        return None

    def forget(self, key: str) -> None:
        """Forget the text remembered under `key` (nothing happens for an unknown key)."""
        entry_id = self._by_key.get(key)
        if entry_id is not None:
            self._remove(entry_id)

    def _add(self, key: str, signature: Signature, bands: list[bytes]) -> None:
        previous = self._by_key.get(key)
        if previous is not None:
            self._remove(previous)
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = _Entry(key, signature, bands)
        self._by_key[key] = entry_id
        for bucket, band in zip(self._buckets, bands, strict=True):
            bucket.setdefault(band, set()).add(entry_id)
        while len(self._entries) > self.window:
            self._remove(next(iter(self._entries)))

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        if self._by_key.get(entry.key) == entry_id:
            del self._by_key[entry.key]
        for bucket, band in zip(self._buckets, entry.bands, strict=True):
            members = bucket.get(band)
            if members is not None:
                members.discard(entry_id)
                if not members:
                    del bucket[band]
