"""Request bodies of `/v1/records` bounded before they are parsed: size, nesting, item count."""

from __future__ import annotations

import gzip
import json

from shared.settings import IngestSettings
from tests.unit.ingester.http_app import deep_metadata, ingester, rejections


async def test_the_item_count_is_checked_before_the_body_is_parsed() -> None:
    # 1001 items, the last one not even JSON: counted and refused before any parsing.
    body = "[" + '{"instruction": "x"}, ' * 1001 + "{not json}]"
    async with ingester() as ing:
        response = await ing.post(body)
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "batch of 1002 records exceeds the limit of 1000"}
    async with ingester(IngestSettings(max_batch=3)) as ing:
        response = await ing.post([{"instruction": f"q{i}"} for i in range(4)])
        assert response.status_code == 413
        assert response.json() == {"detail": "batch of 4 records exceeds the limit of 3"}
        assert ing.publisher.calls == 0


async def test_commas_and_brackets_inside_strings_do_not_count() -> None:
    batch = [{"instruction": 'a, "quoted", [b], {c}, \\', "tags": ["x,y"]} for _ in range(3)]
    async with ingester(IngestSettings(max_batch=3)) as ing:
        response = await ing.post(batch)
    assert response.status_code == 200, response.text
    assert len(response.json()["duplicates"]) == 2  # the same record three times


async def test_bodies_nested_past_any_parser_are_4xx() -> None:
    async with ingester() as ing:
        arrays = await ing.post("[" * 100_000 + "]" * 100_000)
        assert arrays.status_code == 422, arrays.text
        assert rejections(arrays) == {0: [{"path": "(record)", "message": "not a JSON object"}]}

        one = await ing.post(f'{{"instruction": "x", "metadata": {deep_metadata(5000)}}}')
        assert one.status_code == 422, one.text
        assert rejections(one)[0][0]["path"].startswith("metadata.a.a")

        unbalanced = await ing.post("[" * 50_000)
        assert unbalanced.status_code == 400, unbalanced.text
        assert unbalanced.json()["detail"].startswith("body is not valid JSON")

        broken = await ing.post('[{"instruction": "x"} {"instruction": "y"}]')
        assert broken.status_code == 400, broken.text
        assert broken.json()["detail"].startswith("body is not valid JSON")
        assert ing.publisher.calls == 0


async def test_a_number_no_parser_takes_is_refused_alone() -> None:
    body = (
        '[{"record_id": "n", "instruction": "x", "metadata": {"n": ' + "7" * 5000 + "}},"
        ' {"record_id": "fine", "instruction": "y"}]'
    )
    async with ingester() as ing:
        response = await ing.post(body)
    assert response.status_code == 200, response.text
    assert "4300 digits" in rejections(response)[0][0]["message"]
    assert ing.publisher.ids() == ["fine"]


async def test_body_size_is_bounded_while_reading_and_inflating() -> None:
    body = json.dumps({"record_id": "big", "instruction": "x" * 4096}).encode()
    async with ingester(IngestSettings(max_body_bytes=2048)) as ing:
        response = await ing.post(body)
        assert response.status_code == 413
        assert response.json()["detail"] == "request body of 4135 bytes exceeds the 2048 limit"

        packed = gzip.compress(body)
        assert len(packed) < 2048
        inflated = await ing.post(packed, **{"content-encoding": "gzip"})
        assert inflated.status_code == 413
        assert inflated.json()["detail"] == "request body inflates past the 2048 bytes limit"

        small = gzip.compress(json.dumps({"record_id": "small", "instruction": "x"}).encode())
        accepted = await ing.post(small, **{"content-encoding": "gzip"})
        assert accepted.status_code == 200, accepted.text
    assert ing.publisher.ids() == ["small"]
