"""One bad item of an HTTP batch: a per-item 4xx naming the field, never a 500, and the other
items of the batch accepted and published (once, after the whole batch was checked)."""

from __future__ import annotations

import json

from tests.unit.ingester.http_app import deep_metadata, ingester, rejections


async def test_null_metadata_on_a_redacted_record_is_refused_alone() -> None:
    batch = [
        {"record_id": "before", "instruction": "What is Kafka?"},
        {"record_id": "null-meta", "instruction": "Mail ann@example.com", "metadata": None},
        {"record_id": "after", "instruction": "Write to bob@example.com", "metadata": {"a": 1}},
    ]
    async with ingester() as ing:
        response = await ing.post(batch)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == ["before", "after"]
    [error] = rejections(response)[1]
    assert error["path"] == "metadata"
    assert ing.publisher.ids() == ["before", "after"]
    after = ing.publisher.records()[1]
    assert "bob@example.com" not in after.instruction  # type: ignore[operator]
    assert after.metadata["redactions"] == {"email": 1}


async def test_a_lone_surrogate_is_refused_with_its_field() -> None:
    body = json.dumps(
        [
            {"record_id": "surrogate", "instruction": "bad \ud800 text"},
            {"record_id": "key", "instruction": "x", "metadata": {"bad \udc00 key": 1}},
            {"record_id": "fine", "instruction": "good text \U0001f600"},
        ]
    )
    assert "\\ud800" in body  # sent as JSON escapes, as a client would
    async with ingester() as ing:
        response = await ing.post(body)
    assert response.status_code == 200, response.text
    errors = rejections(response)
    assert [e["path"] for e in errors[0]] == ["instruction"]
    assert "surrogate" in errors[0][0]["message"]
    assert [e["path"] for e in errors[1]] == ["metadata.bad \\udc00 key"]
    assert ing.publisher.ids() == ["fine"]


async def test_deep_metadata_is_refused_at_any_depth_and_the_rest_goes_on() -> None:
    for levels in (900, 250, 64):
        body = (
            f'[{{"record_id": "deep", "instruction": "deep", "metadata": {deep_metadata(levels)}}},'
            f' {{"record_id": "fine-{levels}", "instruction": "fine {levels}"}}]'
        )
        async with ingester() as ing:
            response = await ing.post(body)
        assert response.status_code == 200, (levels, response.text)
        [error] = rejections(response)[0]
        assert error["path"].startswith("metadata.a.a.a"), error
        assert "64 levels" in error["message"], error
        # What was published reads back as every downstream service reads it.
        assert [r.record_id for r in ing.publisher.records()] == [f"fine-{levels}"]


async def test_metadata_just_within_the_depth_limit_is_accepted_and_readable() -> None:
    # The record is level 1, its metadata level 2: 63 levels of metadata make 64.
    body = f'{{"record_id": "ok", "instruction": "x", "metadata": {deep_metadata(63)}}}'
    async with ingester() as ing:
        response = await ing.post(body)
    assert response.status_code == 200, response.text
    assert [r.record_id for r in ing.publisher.records()] == ["ok"]


async def test_a_record_over_the_message_limit_is_a_per_item_413_and_nothing_half_sent() -> None:
    # 200 KB of control characters serialise to 1.2 MB of JSON escapes: over Kafka's 1 MiB.
    batch = [
        {"record_id": "small", "instruction": "ok"},
        {"record_id": "big", "instruction": "\x01" * 200_000},
        {"record_id": "small-2", "instruction": "ok too"},
    ]
    async with ingester() as ing:
        response = await ing.post(batch)
        assert response.status_code == 200, response.text
        [rejected] = response.json()["rejected"]
        assert rejected["index"] == 1 and rejected["status"] == 413
        assert "1048576" in rejected["errors"][0]["message"]
        assert ing.publisher.ids() == ["small", "small-2"]
        assert ing.publisher.calls == 1  # one send, after every item was checked

        # The client's retry of the same batch duplicates nothing.
        again = await ing.post(batch)
        assert again.json()["duplicates"] == ["small", "small-2"]
        assert ing.publisher.ids() == ["small", "small-2"]

        # Nothing fits: 413 for the request, nothing sent.
        alone = await ing.post([{"record_id": "big-2", "instruction": "\x02" * 200_000}])
        assert alone.status_code == 413, alone.text
        assert alone.json()["rejected"][0]["status"] == 413
        assert ing.publisher.ids() == ["small", "small-2"]


async def test_an_item_over_the_limit_with_a_smaller_message_limit() -> None:
    async with ingester(max_message_bytes=65_536) as ing:
        response = await ing.post(
            [
                {"record_id": "a", "instruction": "x" * 70_000},
                {"record_id": "b", "instruction": "y"},
            ]
        )
    assert response.status_code == 200, response.text
    assert "65536" in rejections(response)[0][0]["message"]
    assert ing.publisher.ids() == ["b"]
