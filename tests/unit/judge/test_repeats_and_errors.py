"""Judging a record several times: deterministic shuffles per seed, agreement across repeats,
LLM errors that fail a judgment or propagate for a retry, and parameters passed to the LLM."""

from typing import Any

import pytest

from services.judge.judging import agreement_of, judge_record, shuffled_order
from services.judge.rubrics.multi_aspect import MultiAspectRubric
from services.judge.rubrics.pairwise import PairwiseRubric
from shared.events import ChatMessage, Judgment
from shared.llm.base import ChatCompletion, LLMError
from tests.unit.judge.scripted_judge import (
    Call,
    ScriptedLLM,
    multi_aspect_marker,
    pairwise_marker,
    record,
    texts_with_mark,
)


def test_shuffle_is_deterministic() -> None:
    assert shuffled_order(5, "seed", 3) == shuffled_order(5, "seed", 3)
    by_seed = {tuple(shuffled_order(5, f"seed-{i}", 0)) for i in range(20)}
    assert len(by_seed) > 1
    for repeat in range(12):
        assert sorted(shuffled_order(4, "k", repeat)) == [0, 1, 2, 3]
    # Each block of n repeats shows every response in every position once.
    block = [shuffled_order(3, "k", r) for r in range(3)]
    assert all(sorted(column) == [0, 1, 2] for column in zip(*block, strict=True))


async def test_same_seed_same_orders() -> None:
    rec = record(texts_with_mark(4, 2))
    first = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3, seed="x"
    )
    again = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3, seed="x"
    )
    assert [j.order for j in first] == [j.order for j in again]
    by_id = await judge_record(
        rec, MultiAspectRubric(), ScriptedLLM(multi_aspect_marker), repeats=3
    )
    assert [j.order for j in by_id] == [shuffled_order(4, rec.record_id, r) for r in range(3)]


async def test_agreement_drops_when_the_judge_flips() -> None:
    def fickle(call: Call) -> str:
        if call.index == 2:  # the third repeat prefers an unmarked response
            flipped = [
                (label, "MARK" if "MARK" not in text else "") for label, text in call.shown()
            ]
            return pairwise_marker(_Shown(flipped))
        return pairwise_marker(call)

    judgments = await judge_record(
        record(texts_with_mark(2, 0)), PairwiseRubric(), ScriptedLLM(fickle), repeats=3
    )
    assert [j.preferred for j in judgments] == [0, 0, 1]
    assert all(j.agreement == pytest.approx(2 / 3) for j in judgments)

    def flip_scores(call: Call) -> str:
        if call.index % 2 == 0:
            return multi_aspect_marker(call)
        # every other repeat rates the marked response worst
        flipped = [(label, "MARK" if "MARK" not in text else "") for label, text in call.shown()]
        return multi_aspect_marker(_Shown(flipped))

    judgments = await judge_record(
        record(texts_with_mark(3, 1)), MultiAspectRubric(), ScriptedLLM(flip_scores), repeats=4
    )
    assert all(j.agreement is not None and j.agreement < 1 for j in judgments)


class _Shown(Call):
    def __init__(self, shown: list[tuple[str, str]]) -> None:
        super().__init__([], None, 0)
        self._shown = shown

    def shown(self) -> list[tuple[str, str]]:
        return self._shown


def test_agreement_ignores_failed_repeats() -> None:
    ok = Judgment(rubric="pairwise", judge_model="m", preferred=1)
    failed = Judgment(rubric="pairwise", judge_model="m", status="failed", error="x")
    assert agreement_of([ok, failed, ok]) == 1.0
    assert agreement_of([failed]) is None


async def test_non_retryable_llm_error_gives_a_failed_judgment() -> None:
    llm = ScriptedLLM(lambda c: LLMError("HTTP 401: bad key", status_code=401))
    judgments = await judge_record(record(["a", "b"]), MultiAspectRubric(), llm, repeats=2)
    assert [j.status for j in judgments] == ["failed", "failed"]
    assert all("HTTP 401: bad key" in (j.error or "") for j in judgments)
    assert all(j.ratings == [] and j.agreement is None for j in judgments)


@pytest.mark.parametrize("status", [503, 429, None])
async def test_retryable_llm_error_propagates(status: int | None) -> None:
    llm = ScriptedLLM(lambda c: LLMError("server busy", status_code=status))
    with pytest.raises(LLMError):
        await judge_record(record(["a", "b"]), MultiAspectRubric(), llm)


async def test_params_and_max_tokens_reach_the_llm() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(ScriptedLLM):
        async def chat(
            self,
            messages: list[ChatMessage],
            *,
            response_format: dict[str, Any] | None = None,
            **params: Any,
        ) -> ChatCompletion:
            seen.append(params)
            return await super().chat(messages, response_format=response_format, **params)

    llm = Recording(pairwise_marker)
    await judge_record(
        record(["a MARK", "b"]), PairwiseRubric(), llm, max_tokens=123, temperature=0
    )
    assert seen == [{"max_tokens": 123, "temperature": 0}]
