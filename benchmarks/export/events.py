"""The export benchmarks' synthetic records: `records.completed` events of a preference flow,
two responses and two people's answers each, deterministic, generated one at a time.

Record `i` always has the same content, hence the same `record_id` (a hash of it), so a later
event for `i` (`answered_again`) is a new answer to an existing record: newest wins in the store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from devstack.sample_records import completed, preference, record, response
from shared.events import CompletedRecord, Record

FLOW = "bench"
FORMATS = ("sft", "dpo")


def _record(i: int) -> Record:
    return record(
        instruction=f"Write a function that returns the {i}th prime number, with tests.",
        responses=(
            (f"def prime(n):  # answer {i}\n    ..." + " sieve" * 20, "model-a"),
            (f"Use a loop. ({i})" + " maybe" * 10, "model-b"),
        ),
        flow=FLOW,
    )


def completed_event(i: int) -> CompletedRecord:
    """Record `i` as people first answered it."""
    rec = _record(i)
    answers = (
        response(rec, "ann1", preference(5 - i % 2, 2)),
        response(rec, "ann2", preference(4, 1 + i % 3, best=1 if i % 7 else 2)),
    )
    return completed(rec, *answers)


def events(n: int) -> Iterator[bytes]:
    """n completed-record events, deterministic, one at a time."""
    for i in range(n):
        yield completed_event(i).to_bytes()


def answered_again(i: int, round_no: int) -> CompletedRecord:
    """Record `i` completed again in round `round_no` (1, 2, ...): a third person's answer,
    later than the first completion, so it replaces it."""
    rec = _record(i)
    answers = (
        response(rec, "ann1", preference(5 - i % 2, 2)),
        response(rec, "ann2", preference(4, 1 + i % 3, best=1 if i % 7 else 2)),
        response(rec, f"late{round_no}", preference(1 + round_no % 5, 3, best=2), minute=round_no),
    )
    return completed(rec, *answers, minute=round_no)


def round_events(n: int, round_no: int, changes: int, new: int) -> Iterator[CompletedRecord]:
    """Round `round_no`'s `changes` changed records over a store of `n` first records (and the
    new ones of earlier rounds): `changes - new` existing records answered again, picked at
    random (seeded by the round), then `new` records never seen before."""
    existing = n + (round_no - 1) * new
    picks = random.Random(round_no).sample(range(existing), changes - new)
    for i in picks:
        yield answered_again(i, round_no)
    first_new = n + (round_no - 1) * new
    for i in range(first_new, first_new + new):
        yield completed_event(i)


def flows_config() -> Any:
    from shared.flows import FlowsConfig

    return FlowsConfig.model_validate(
        {
            "flows": {
                FLOW: {
                    "publish": {"plugin": "preference"},
                    "export": {"formats": [{"plugin": f} for f in FORMATS], "every_s": 0},
                }
            }
        }
    )
