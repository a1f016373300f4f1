"""`sft-demonstrations` end to end: prompts in, the bots write the ideal responses in Argilla,
and exactly their texts come out as the `sft` completions."""

from __future__ import annotations

from devstack.annotators.answers import EDIT_SENTENCE
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import by_record, completed_records

FLOW = "sft-demonstrations"


async def test_the_bots_written_responses_are_the_sft_completions(loop: Loop) -> None:
    # Every text edited: the agree policy appends a fixed sentence to what it writes.
    run = await loop.demo(FLOW, limit=3, policy_options={"edit_rate": 1.0})

    completed = await completed_records(loop.settings.kafka, run.record_ids)
    written = {}
    for record_id, event in completed.items():
        [answer] = [r for r in event.responses if r.status == "submitted"]
        written[record_id] = answer.values["ideal_response"]
        assert event.record.instruction and event.record.instruction in written[record_id]
        assert written[record_id].endswith(EDIT_SENTENCE)

    rows = by_record(loop.rows(run, "sft"))
    assert set(rows) == set(run.record_ids)
    for record_id, [row] in rows.items():
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": completed[record_id].record.instruction}
        assert assistant == {"role": "assistant", "content": written[record_id]}
        assert row["auto_accepted"] is False
