"""`bounded_json`: the scan agrees with the JSON parser on any document, at any chunk size;
too-deep values are cut to the marker at exactly the limit; items are counted unparsed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingester.bounded_json import TOO_DEEP, BodyError, parse_items, scan
from services.ingester.item_checks import check_item

# Strings full of what could fool a scanner: quotes, backslashes, brackets, commas.
tricky_text = st.text(alphabet=st.sampled_from('ab"\\[]{},: \n\u00e9\U0001f600'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((depth_of(child) for child in children), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(items=st.lists(json_values, max_size=6), chunk=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]))
def test_the_scan_agrees_with_the_parser(items: list[Any], chunk: int) -> None:
    body = json.dumps(items, ensure_ascii=False).encode()
    found = scan(body, cut_depth=1000, keep_commas=100, chunk_bytes=chunk)
    assert found.balanced and found.depth == 0
    assert found.max_depth == depth_of(items)
    assert found.commas == max(len(items) - 1, 0)
    assert parse_items(body, max_items=100, max_depth=1000) == items


@settings(max_examples=200, deadline=None)
@given(value=json_values, limit=st.integers(min_value=2, max_value=5))
def test_values_past_the_limit_become_the_marker_and_nothing_else_changes(
    value: Any, limit: int
) -> None:
    record = {"instruction": "x", "metadata": value}
    [parsed] = parse_items(json.dumps([record]).encode(), max_items=10, max_depth=limit)
    marked = json.dumps(TOO_DEEP)[1:-1] in json.dumps(parsed)
    assert marked == (depth_of(record) > limit)
    assert bool(check_item(parsed, limit)) == marked
    if not marked:
        assert parsed == record


def test_escaped_quotes_across_chunk_boundaries() -> None:
    body = json.dumps(['a\\"[', '\\\\"', {"k": 'x\\\\\\"]'}]).encode()
    for chunk in range(1, len(body) + 1):
        found = scan(body, cut_depth=10, keep_commas=10, chunk_bytes=chunk)
        assert (found.max_depth, found.commas, found.balanced) == (2, 2, True), chunk


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"[1,]", 400, "body is not valid JSON: item 1: Expecting value"),
        (b"[1] [2]", 400, "body is not valid JSON: extra data after the array"),
        (b"[" * 10_000, 400, "body is not valid JSON: its brackets do not balance"),
        (b"]", 400, "body is not valid JSON"),
        (b'["\xff"]', 400, "body is not valid JSON: not UTF-8"),
        (b"[1, 2, 3, 4]", 413, "batch of 4 records exceeds the limit of 3"),
    ],
)
def test_bodies_refused_whole(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(BodyError) as refused:
        parse_items(body, max_items=3, max_depth=8)
    assert refused.value.status == status
    assert refused.value.detail.startswith(detail), refused.value.detail
