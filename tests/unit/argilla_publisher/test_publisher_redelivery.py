"""Redelivery changes nothing people saw: a record annotators answered keeps the version they
answered, and split mode gives a record to the same annotator wherever it is consumed from."""

from __future__ import annotations

import logging

import pytest

from devstack.sample_records import record
from shared.events import Record
from tests.unit.argilla_publisher.fake_argilla import FakeArgilla
from tests.unit.argilla_publisher.publisher_harness import flows, publisher, send

FLOW = "pub"
DATASET = f"admin/{FLOW}"
ANNOTATORS = ["ann-a", "ann-b", "ann-c"]
SPLIT = {"plugin": "curation", "mode": "split", "annotators": ANNOTATORS, "workspace": "ws"}


def version(record_id: str, text: str) -> Record:
    return record(flow=FLOW, record_id=record_id, instruction=text)


def prompt(argilla: FakeArgilla, record_id: str) -> str:
    fields = argilla.records(DATASET)[record_id]["fields"]
    return str(fields["prompt"])


async def test_an_answered_record_keeps_the_version_annotators_saw(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    argilla = FakeArgilla()
    async with publisher(monkeypatch, argilla, flows(pub={"plugin": "preference"})) as h:
        await send(h, [version("seen", "v1"), version("draft", "v1"), version("open", "v1")])
        [dataset_id] = list(argilla.datasets)
        argilla.answer(dataset_id, "seen", "submitted")
        argilla.answer(dataset_id, "draft", "draft")
        with caplog.at_level(logging.INFO, logger="loopline.argilla_publisher"):
            # Redelivered or generated again: new texts for the same record ids.
            await send(
                h,
                [version(i, "v2") for i in ("seen", "draft", "open", "new")],
            )
    assert prompt(argilla, "seen") == "v1"  # annotators answered v1: it stays
    assert prompt(argilla, "draft") == "v1"  # a draft answer too
    assert prompt(argilla, "open") == "v2"  # nobody answered it yet: updated
    assert prompt(argilla, "new") == "v2"
    assert sorted(argilla.upserts()[-1]) == ["new", "open"]
    assert h.dead == []
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "kept 2 answered record(s)" in m and "draft" in m and "seen" in m for m in messages
    ), messages
    # Every record of the batch is in Argilla: the kept ones are announced as published too.
    assert sorted(p.record_id for p in h.published[3:]) == ["draft", "new", "open", "seen"]


async def test_split_mode_gives_a_record_to_the_same_annotator_wherever_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argilla = FakeArgilla()
    records = [version(f"r{i}", "text") for i in range(12)]
    async with publisher(monkeypatch, argilla, flows(pub=SPLIT)) as h:
        await send(h, records, partition=0)
        await send(h, records[::-1], partition=1)  # re-emitted, read from elsewhere
    shares = {a: set(argilla.records(f"ws-{a}/{FLOW}")) for a in ANNOTATORS}
    every = [i for share in shares.values() for i in share]
    assert sorted(every) == sorted(r.record_id for r in records)  # disjoint and complete
    from services.argilla_publisher.targets import split_index

    for annotator, share in shares.items():
        for record_id in share:
            assert ANNOTATORS[split_index(record_id, len(ANNOTATORS))] == annotator
    assert h.dead == []


def test_the_split_rule_is_a_stable_function_of_the_id_balanced_on_average() -> None:
    from services.argilla_publisher.targets import split_index

    ids = [f"rec-{i}" for i in range(3000)]
    picks = [split_index(i, 3) for i in ids]
    assert picks == [split_index(i, 3) for i in ids]  # the same every time, in any process
    assert set(picks) == {0, 1, 2}
    assert all(900 <= picks.count(n) <= 1100 for n in range(3))  # a third each, give or take
    assert {split_index(i, 1) for i in ids} == {0}  # overlap mode: the one dataset
