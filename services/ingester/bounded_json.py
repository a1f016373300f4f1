"""JSON request bodies bounded before they are parsed: items counted, nesting cut.

`parse_items` reads a body of one JSON value or an array of them. Before any parsing, one pass
over the bytes (numpy, in chunks: at most tens of milliseconds for the largest body) finds the
structure outside strings: how many items the array holds (too many: 413 at once) and where
values nest deeper than a record may. Each too-deep value is replaced, still unparsed, by the
`TOO_DEEP` marker, so no parser ever recurses past the limit and the item can be refused alone
with the path of the marker (`services.ingester.item_checks`). An item Python cannot read (an
integer of more than 4300 digits) comes back as `Unreadable`, to be refused alone too.
"""

from __future__ import annotations

import bisect
import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TOO_DEEP", "BodyError", "Structure", "Unreadable", "parse_items", "scan"]

# Stands for a value nested too deep, in place of it: unguessable, so no client sends it.
TOO_DEEP = f"\x00loopline:too-deep:{secrets.token_hex(16)}"
_TOO_DEEP_JSON = json.dumps(TOO_DEEP).encode()

_CHUNK = 1 << 20
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_OPEN = {ord("["), ord("{")}
_CLOSE = {ord("]"), ord("}")}
_STRUCTURAL = np.zeros(256, dtype=bool)
_DELTA = np.zeros(256, dtype=np.int32)
for _c in _OPEN | _CLOSE | {_COMMA}:
    _STRUCTURAL[_c] = True
for _c in _OPEN:
    _DELTA[_c] = 1
for _c in _CLOSE:
    _DELTA[_c] = -1
_WHITESPACE = b" \t\r\n"

Positions = npt.NDArray[np.int64]


class BodyError(ValueError):
    """The body as a whole is refused: `status` (400, 413) and `detail` for the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Unreadable:
    """An item that is valid JSON but that Python cannot read; refused on its own."""

    message: str


@dataclass
class Structure:
    """A body's brackets and commas outside strings, as `scan` finds them."""

    depth: int = 0  # the nesting when the scan ended (0 for a balanced body)
    max_depth: int = 0
    balanced: bool = True  # never closed more than it opened, and closed all it opened
    top_end: int = -1  # where the outermost container closed (-1: never)
    commas: int = 0  # commas directly inside the outermost container
    comma_positions: list[int] = field(default_factory=list)  # the first `keep_commas` of them
    # Where values at the cut depth open and close (they cannot nest: they alternate).
    cut_starts: list[int] = field(default_factory=list)
    cut_ends: list[int] = field(default_factory=list)

    @property
    def cuts(self) -> list[tuple[int, int]]:
        """The too-deep values, each as (first byte, last byte)."""
        return list(zip(self.cut_starts, self.cut_ends, strict=False))


def _escaped(quotes: Positions, backslashes: Positions, carry: int) -> npt.NDArray[np.bool_]:
    """Which quotes an odd run of backslashes escapes (`carry`: the run the chunk starts with)."""
    escaped = np.zeros(quotes.size, dtype=bool)
    if backslashes.size:
        starts = np.ones(backslashes.size, dtype=bool)
        starts[1:] = np.diff(backslashes) != 1
        run_start = np.maximum.accumulate(np.where(starts, backslashes, 0))
        index = np.minimum(np.searchsorted(backslashes, quotes - 1), backslashes.size - 1)
        preceded = backslashes[index] == quotes - 1
        length = quotes - run_start[index]
        length = np.where(run_start[index] == 0, length + carry, length)
        escaped = preceded & (length % 2 == 1)
    if quotes.size and quotes[0] == 0 and carry % 2 == 1:
        escaped[0] = True  # escaped by the run the previous chunk ended with
    return escaped


def _trailing_backslashes(chunk: npt.NDArray[np.uint8], carry: int) -> int:
    """The run of backslashes a chunk ends with (continuing `carry` if it is all backslashes)."""
    others = np.flatnonzero(chunk != _BACKSLASH)
    if others.size == 0:
        return carry + int(chunk.size)
    return int(chunk.size - 1 - others[-1])


def scan(body: bytes, cut_depth: int, keep_commas: int, chunk_bytes: int = _CHUNK) -> Structure:
    """The structure of `body` outside strings.

    Values whose brackets reach `cut_depth` (the outermost container is depth 1) are listed in
    `cuts`; the positions of the first `keep_commas` top-level commas are kept.
    """
    data = np.frombuffer(body, dtype=np.uint8)
    found = Structure()
    in_string = False
    backslash_run = 0
    for offset in range(0, data.size, chunk_bytes):
        chunk = data[offset : offset + chunk_bytes]
        quotes = np.flatnonzero(chunk == _QUOTE)
        if quotes.size:
            backslashes = np.flatnonzero(chunk == _BACKSLASH)
            quotes = quotes[~_escaped(quotes, backslashes, backslash_run)]
        backslash_run = _trailing_backslashes(chunk, backslash_run)
        marks = np.flatnonzero(_STRUCTURAL[chunk])
        if quotes.size:
            inside = (np.searchsorted(quotes, marks) + int(in_string)) % 2 == 1
            marks = marks[~inside]
            in_string = (int(in_string) + int(quotes.size)) % 2 == 1
        elif in_string:
            continue  # the whole chunk is inside one string
        if marks.size == 0:
            continue
        chars = chunk[marks]
        depth = np.cumsum(_DELTA[chars]) + found.depth  # the depth after each mark
        found.depth = int(depth[-1])
        found.max_depth = max(found.max_depth, int(depth.max()))
        if found.balanced and int(depth.min()) < 0:
            found.balanced = False
        if found.top_end < 0:
            closed = np.flatnonzero(depth == 0)
            if closed.size:
                found.top_end = offset + int(marks[closed[0]])
        commas = np.flatnonzero((chars == _COMMA) & (depth == 1))
        found.commas += int(commas.size)
        room = keep_commas - len(found.comma_positions)
        if room > 0:
            found.comma_positions.extend((offset + marks[commas[:room]]).tolist())
        if found.max_depth >= cut_depth:
            is_open = _DELTA[chars] == 1
            is_close = _DELTA[chars] == -1
            found.cut_starts.extend((marks[is_open & (depth == cut_depth)] + offset).tolist())
            found.cut_ends.extend((marks[is_close & (depth == cut_depth - 1)] + offset).tolist())
    if found.depth != 0:
        found.balanced = False
    return found


def _load(piece: bytes, where: str) -> Any:
    try:
        return json.loads(piece.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"body is not valid JSON: not UTF-8 ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BodyError(400, f"body is not valid JSON: {where}{exc}") from None
    except (ValueError, RecursionError) as exc:
        return Unreadable(str(exc))


def _cut(body: bytes, start: int, end: int, cuts: list[tuple[int, int]]) -> bytes:
    """`body[start:end]` with each too-deep value inside it replaced by the marker."""
    first = bisect.bisect_left(cuts, (start, start))
    last = bisect.bisect_left(cuts, (end, end))
    if first == last:
        return body[start:end]
    parts: list[bytes] = []
    at = start
    for s, e in cuts[first:last]:
        parts += [body[at:s], _TOO_DEEP_JSON]
        at = e + 1
    parts.append(body[at:end])
    return b"".join(parts)


def parse_items(body: bytes, max_items: int, max_depth: int) -> list[Any]:
    """The items of a body holding one JSON value or an array of them.

    Raises `BodyError`: 413 for more than `max_items` items (counted before parsing), 400 for a
    body that is not JSON. A value nested deeper than `max_depth` levels inside an item (the
    item is level 1) is replaced by `TOO_DEEP`; an item Python cannot read is `Unreadable`.
    """
    stripped = body.lstrip(_WHITESPACE)
    offset = len(body) - len(stripped)
    is_array = stripped[:1] == b"["
    structure = scan(body, max_depth + (2 if is_array else 1), keep_commas=max_items)
    if not structure.balanced:
        if structure.max_depth <= max_depth + 2:
            _load(body, "")  # the parser's own message for a shallow body
        raise BodyError(400, "body is not valid JSON: its brackets do not balance")
    cuts = structure.cuts
    if not is_array:
        return [_load(_cut(body, 0, len(body), cuts), "")]
    end = structure.top_end
    if body[end + 1 :].strip(_WHITESPACE):
        raise BodyError(400, f"body is not valid JSON: extra data after the array at byte {end}")
    count = structure.commas + 1
    if count > max_items:
        raise BodyError(413, f"batch of {count} records exceeds the limit of {max_items}")
    bounds = [offset, *structure.comma_positions, end]
    if count == 1 and not body[offset + 1 : end].strip(_WHITESPACE):
        return []
    return [
        _load(_cut(body, start + 1, stop, cuts), f"item {index}: ")
        for index, (start, stop) in enumerate(itertools.pairwise(bounds))
    ]
