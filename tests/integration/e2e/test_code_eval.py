"""`code-eval` end to end: both local models answer code tasks, the `additive` judge checks
each response against the code criteria, `run-tests` bots run each response with the record's
tests and tick the criteria in Argilla (`code-scoring`); exported as `eval` (scores per model,
win rates between the two), `dpo` and `sft`."""

from __future__ import annotations

from devstack.annotators.sandbox import Limits, extract_code, run_with_tests
from devstack.config import model_name
from tests.integration.e2e.conftest import Loop
from tests.integration.e2e.reading import (
    by_record,
    completed_records,
    judged_records,
)

FLOW = "code-eval"
MODELS = {model_name("0.5b"), model_name("1.5b")}


async def test_two_models_scored_and_the_passing_response_is_correct(loop: Loop) -> None:
    run = await loop.demo(FLOW, limit=3, policy="run-tests")
    judged = await judged_records(loop.settings.kafka, run.record_ids)
    completed = await completed_records(loop.settings.kafka, run.record_ids)

    win_rates = loop.rows(run, "eval", "win_rates")
    assert [{row["model_a"], row["model_b"]} for row in win_rates] == [MODELS]
    [rate] = win_rates
    assert rate["wins"] + rate["losses"] + rate["ties"] == len(run.record_ids)
    scores = by_record(loop.rows(run, "eval", "scores"))
    assert set(scores) == set(run.record_ids)
    assert all({row["model"] for row in rows} == MODELS for rows in scores.values())

    dpo = by_record(loop.rows(run, "dpo"))
    passing_chosen = 0
    for record_id, record in judged.items():
        [judgment] = record.judgments
        assert (judgment.rubric, judgment.status) == ("additive", "ok"), judgment
        print(
            f"code-eval {record_id}: generated {[r.usage for r in record.responses]}, "
            f"judge wrote {len(judgment.raw_output or '')} characters"
        )
        tests = record.metadata["tests"]
        texts = [r.text for r in record.responses]
        # Recomputed here with the same sandbox: which responses pass the record's tests.
        passed = [run_with_tests(extract_code(text), tests, Limits()).passed for text in texts]
        print(f"code-eval {record_id}: the responses pass the tests: {passed}")
        [answer] = completed[record_id].responses
        met = [
            [c for c in answer.values[f"criteria_response_{i + 1}"] if c != "none"]
            for i in range(2)
        ]
        # The correctness point goes exactly to the responses that pass; a failing response
        # meets no criterion at all (run-tests), so a passing one always scores higher.
        assert [("correct" in m) for m in met] == passed, (passed, met)
        assert all(m == [] for m, ok in zip(met, passed, strict=True) if not ok), (passed, met)
        # dpo: more criteria met is chosen; the same number is no pair.
        if len(met[0]) == len(met[1]):
            assert record_id not in dpo
            continue
        best = 0 if len(met[0]) > len(met[1]) else 1
        [row] = dpo[record_id]
        assert (row["chosen"], row["rejected"]) == (texts[best], texts[1 - best])
        if passed[0] != passed[1]:
            assert passed[best], "the response that passes its tests is chosen"
            passing_chosen += 1
    print(f"code-eval: passing response chosen in {passing_chosen} of {len(judged)} records")
