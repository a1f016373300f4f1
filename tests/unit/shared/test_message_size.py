"""The rule that keeps a growing record under the one message limit."""

import pytest

from shared.events import CandidateResponse, Judgment, Record
from shared.message_size import CUT_NOTE, RAW_OUTPUT_KEEP, RecordTooLarge, fit, payload_limit

LIMIT = 128 * 1024


def judged(raw_chars: int, response_chars: int = 100) -> Record:
    return Record(
        flow="f",
        instruction="q",
        responses=[CandidateResponse(text="a" * response_chars, model="m")],
        judgments=[Judgment(rubric="pairwise", judge_model="j", raw_output="r" * raw_chars)],
    )


def test_a_record_that_fits_is_sent_as_it_is() -> None:
    record = judged(5000)
    assert fit(record, LIMIT) == record.to_bytes()


def test_the_judges_raw_outputs_are_cut_first() -> None:
    record = judged(LIMIT)  # the raw output alone is over the limit
    body = fit(record, LIMIT)
    assert len(body) <= payload_limit(LIMIT)
    [judgment] = Record.model_validate_json(body).judgments
    assert judgment.raw_output == "r" * RAW_OUTPUT_KEEP + CUT_NOTE
    assert Record.model_validate_json(body).responses == record.responses


def test_a_record_too_large_even_then_is_refused_with_its_size_and_the_limit() -> None:
    record = judged(10, response_chars=LIMIT)
    with pytest.raises(RecordTooLarge, match=r"over the \d+-byte room under the message limit"):
        fit(record, LIMIT)
