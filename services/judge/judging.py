"""Judging one record: shuffled presentation, structured call, mapping back, repeat statistics.

Each repeat shows the responses in a different deterministic order, so position bias shows up
as disagreement instead of hiding in the scores. Within each block of N repeats (N responses)
the orders are the N rotations of one seeded permutation: every response is shown in every
position exactly once (for pairwise with two repeats: both orders).

Each judgment is a span in the current trace (the record's), the parent of its LLM calls, with
a `gen_ai.evaluation.result` event per response and criterion (`services.judge.evaluation`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from services.judge import evaluation
from services.judge.rubrics.base import Rubric
from services.judge.structured import structured_call
from shared.events import Judgment, Rating, Record
from shared.llm.base import LLM, LLMError
from shared.verdict import overall_score


def shuffled_order(n: int, key: str, repeat: int) -> list[int]:
    """The order of repeat `repeat`: ``order[k]`` is the record's index shown k-th.

    Fixed by (`key`, `repeat`) alone, independent of the Python version and hash seed.
    """
    block, shift = divmod(repeat, n) if n else (repeat, 0)

    def rank(i: int) -> bytes:
        return hashlib.sha256(f"{key}\x1f{block}\x1f{i}".encode()).digest()

    base = sorted(range(n), key=rank)
    return base[shift:] + base[:shift]


def margin_of(ratings: Sequence[Sequence[Rating]]) -> float | None:
    """Best minus worst overall score; None when the responses are not scored (pairwise)."""
    scores = [overall_score(r) for r in ratings]
    known = [s for s in scores if s is not None]
    if not scores or len(known) != len(scores):
        return None
    return max(known) - min(known)


def verdict(judgment: Judgment) -> int | str | None:
    """The best response of one judgment: a record index, "tie", or None if it cannot tell."""
    if judgment.status != "ok":
        return None
    if judgment.ratings:
        scores = [overall_score(r) for r in judgment.ratings]
        if any(s is None for s in scores):
            return None
        top = max(s for s in scores if s is not None)
        best = [i for i, s in enumerate(scores) if s == top]
        return best[0] if len(best) == 1 else "tie"
    if judgment.tie:
        return "tie"
    return judgment.preferred


def agreement_of(judgments: Sequence[Judgment]) -> float | None:
    """The share of ok repeats whose best response is the majority's; None without any."""
    verdicts = [verdict(j) for j in judgments if j.status == "ok"]
    if not verdicts:
        return None
    _, count = Counter(verdicts).most_common(1)[0]
    return count / len(verdicts)


def _unshuffle(fields: dict[str, Any], order: list[int]) -> dict[str, Any]:
    """Judgment fields by shown position → by record index."""
    n = len(order)
    shown_ratings: list[list[Rating]] = list(fields.get("ratings") or [])
    if shown_ratings and len(shown_ratings) != n:
        raise ValueError(f"the rubric gave ratings for {len(shown_ratings)} of {n} responses")
    ratings: list[list[Rating]] = [[] for _ in range(n)] if shown_ratings else []
    for k, rated in enumerate(shown_ratings):
        ratings[order[k]] = list(rated)
    preferred = fields.get("preferred")
    tie = bool(fields.get("tie", False))
    if preferred is not None:
        if not isinstance(preferred, int) or not 0 <= preferred < n:
            raise ValueError(f"the rubric preferred shown position {preferred!r} of {n}")
        if tie:
            raise ValueError("the rubric gave both a preferred response and a tie")
        preferred = order[preferred]
    return {
        "ratings": ratings,
        "preferred": preferred,
        "tie": tie,
        "rationale": str(fields.get("rationale") or ""),
    }


async def _judge_once(
    record: Record,
    rubric: Rubric,
    llm: LLM,
    order: list[int],
    repeat: int,
    max_tokens: int,
    params: dict[str, Any],
) -> Judgment:
    """One judgment, in its own span with its evaluation events."""
    with evaluation.judgment_span(llm.telemetry.tracer, record, rubric.name, repeat) as span:
        judgment, error_type = await _judgment(
            record, rubric, llm, order, repeat, max_tokens, params
        )
        evaluation.report(span, record, judgment, error_type, llm.telemetry.capture_content)
    return judgment


async def _judgment(
    record: Record,
    rubric: Rubric,
    llm: LLM,
    order: list[int],
    repeat: int,
    max_tokens: int,
    params: dict[str, Any],
) -> tuple[Judgment, str | None]:
    """One judgment, and the `error.type` of its failure if it failed."""
    n = len(order)
    base: dict[str, Any] = {
        "rubric": rubric.name,
        "judge_model": llm.model,
        "order": order,
        "repeat": repeat,
    }

    def failed(
        error: str, raw: str | None = None, kind: str = evaluation.INVALID_OUTPUT
    ) -> tuple[Judgment, str]:
        return Judgment(status="failed", error=error, raw_output=raw, **base), kind

    shown = [record.responses[i] for i in order]
    try:
        output_model = rubric.output_model(n)
        messages = rubric.messages(record, shown)
    except ValueError as exc:
        message = f"rubric {rubric.name!r} cannot judge this record: {exc}"
        return failed(message, kind=evaluation.RUBRIC_REFUSED)
    try:
        result = await structured_call(llm, messages, output_model, max_tokens=max_tokens, **params)
    except LLMError as exc:
        if exc.retryable:
            raise
        return failed(f"judge call failed: {exc}", kind=exc.error_type)
    # Named as the endpoint reports it (an endpoint routes a name to whatever model it runs).
    base["judge_model"] = result.model or llm.model
    if result.value is None:
        return failed(result.error or "invalid judge output", result.raw)
    try:
        fields = _unshuffle(dict(rubric.to_judgment_fields(result.value, n)), order)
    except ValueError as exc:
        return failed(f"cannot read the judge's output: {exc}", result.raw)
    judgment = Judgment(
        status="ok",
        margin=margin_of(fields["ratings"]),
        raw_output=result.raw,
        **fields,
        **base,
    )
    return judgment, None


async def judge_record(
    record: Record,
    rubric: Rubric,
    llm: LLM,
    *,
    repeats: int = 1,
    seed: str | None = None,
    max_tokens: int = 700,
    **params: Any,
) -> list[Judgment]:
    """One judgment per repeat of `record`'s responses by `rubric` and `llm`.

    Ratings and `preferred` refer to the record's response indices (the shuffle undone). A
    judge answer that stays invalid, a rubric that cannot take the record, or an LLM error that
    retrying cannot fix gives a failed judgment (error and raw text kept, no ratings); a
    retryable `LLMError` propagates. `params` go to the LLM call (e.g. temperature). No
    responses, nothing to judge: [].
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    n = len(record.responses)
    if n == 0:
        return []
    key = seed if seed is not None else record.record_id
    judgments = [
        await _judge_once(record, rubric, llm, shuffled_order(n, key, r), r, max_tokens, params)
        for r in range(repeats)
    ]
    if repeats == 1:
        return judgments
    agreement = agreement_of(judgments)
    return [j.model_copy(update={"agreement": agreement}) for j in judgments]
