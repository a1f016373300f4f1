"""Records and judgments for the template tests, and readers for what a template makes of them:
the suggestions on an Argilla record, the questions in dataset settings."""

from __future__ import annotations

from typing import Any

from shared.events import Record


def rated(*scores: float, judge: str = "judge-7b", **extra: Any) -> dict[str, Any]:
    """A multi-aspect judgment with these overall scores, per response."""
    return {
        "rubric": "multi-aspect",
        "judge_model": judge,
        "ratings": [
            [
                {"aspect": "helpfulness", "score": max(1.0, s - 1)},
                {"aspect": "overall", "score": s, "rationale": "..."},
            ]
            for s in scores
        ],
        "margin": max(scores) - min(scores),
        **extra,
    }


def make(
    texts: list[str] | None = None, judgments: list[dict[str, Any]] | None = None, **fields: Any
) -> Record:
    texts = ["first answer", "second answer"] if texts is None else texts
    data: dict[str, Any] = {
        "record_id": "rec-1",
        "flow": "support",
        "instruction": "How do I reverse a list in Python?",
        "responses": [
            {"text": text, "model": f"model-{i}", "source": "generator"}
            for i, text in enumerate(texts)
        ],
        "judgments": judgments or [],
    }
    data.update(fields)
    return Record.model_validate(data)


def suggestions(argilla_record: Any) -> dict[str, tuple[Any, Any, Any]]:
    """question -> (value, score, agent)."""
    return {s.question_name: (s.value, s.score, s.agent) for s in argilla_record.suggestions}


def questions(settings: Any) -> dict[str, tuple[str, bool]]:
    return {q.name: (q.type, q.required) for q in settings.questions}


def additive(*met: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "rubric": "additive",
        "judge_model": "checker",
        "ratings": [
            [{"aspect": "additive", "score": float(len(m)), "criteria_met": m}] for m in met
        ],
        **extra,
    }
