"""Records, responses and completed events for the exporter's tests and benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import (
    AnnotatorResponse,
    CandidateResponse,
    CompletedRecord,
    Judgment,
    Rating,
    Record,
    ResponseStatus,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    instruction: str = "Reverse a string in Python.",
    responses: tuple[tuple[str, str], ...] = (("s[::-1]", "model-a"), ("no idea", "model-b")),
    flow: str = "support",
    judge_scores: tuple[float, ...] | None = None,
    **fields: Any,
) -> Record:
    judgments = []
    if judge_scores is not None:
        best, worst = max(judge_scores), min(judge_scores)
        judgments.append(
            Judgment(
                rubric="multi-aspect",
                judge_model="judge-7b",
                ratings=[[Rating(aspect="overall", score=s)] for s in judge_scores],
                margin=best - worst,
            )
        )
    return Record(
        flow=flow,
        instruction=instruction,
        responses=[CandidateResponse(text=t, model=m) for t, m in responses],
        judgments=judgments,
        created_at=T0,
        updated_at=T0,
        **fields,
    )


def response(
    rec: Record,
    annotator: str,
    values: dict[str, Any],
    status: ResponseStatus = ResponseStatus.submitted,
    minute: int = 0,
) -> AnnotatorResponse:
    return AnnotatorResponse(
        record_id=rec.record_id,
        dataset="support",
        annotator=annotator,
        status=status,
        values=values,
        responded_at=T0 + timedelta(minutes=minute),
    )


def completed(rec: Record, *responses: AnnotatorResponse, minute: int = 0) -> CompletedRecord:
    return CompletedRecord(
        record=rec,
        dataset="support",
        responses=list(responses),
        completed_at=T0 + timedelta(minutes=minute),
    )


def preference(r1: int, r2: int, best: int = 1, corrected: str | None = None) -> dict[str, Any]:
    """A preference-template answer: ratings of both responses and a ranking."""
    order = ["response_1", "response_2"] if best == 1 else ["response_2", "response_1"]
    values: dict[str, Any] = {
        "rating_response_1": r1,
        "rating_response_2": r2,
        "ranking": [{"value": v, "rank": i + 1} for i, v in enumerate(order)],
    }
    if corrected is not None:
        values["corrected_response"] = corrected
    return values
