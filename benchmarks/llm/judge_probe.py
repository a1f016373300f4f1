"""One multi-aspect judge call, with and without the output constrained, timed."""

from __future__ import annotations

import time
from typing import Any

import httpx
from instructions import INSTRUCTIONS

from shared.events import Record

JUDGE_TEMPERATURE = 0.0  # Loopline's judge default; distilabel's judge gets the same


def _without(value: Any, key: str) -> Any:
    """`value` (JSON-like) with every `key` left out of every mapping in it."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def probe_judge(base_url: str, model: str, max_tokens: int) -> list[str]:
    """One multi-aspect judge call on a fixed record, with the output constrained as the judge
    sends it (JSON schema), with the schema's string length limits left out, and free."""
    from services.judge.rubrics.multi_aspect import MultiAspectRubric
    from services.judge.structured import response_format_for
    from shared.events import CandidateResponse

    rubric = MultiAspectRubric()
    record = Record(
        flow="probe",
        instruction=INSTRUCTIONS[0],
        responses=[
            CandidateResponse(
                text="def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())"
                "\n    return s == s[::-1]\n\nIt normalises the string and compares it with "
                "its reverse.",
                model=model,
            ),
            CandidateResponse(
                text="Compare the string with its reverse: `s == s[::-1]`.", model=model
            ),
        ],
    )
    messages = [m.model_dump(mode="json") for m in rubric.messages(record, list(record.responses))]
    schema = response_format_for(rubric.output_model(2))
    unbounded = _without(schema, "maxLength")
    modes: list[tuple[str, dict[str, Any] | None]] = [
        ("json_schema (as the judge sends it)", schema),
        ("json_schema without maxLength", unbounded),
        ("no response_format", None),
    ]
    lines = []
    for label, response_format in modes:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": JUDGE_TEMPERATURE,
        }
        if response_format is not None:
            body["response_format"] = response_format
        started = time.perf_counter()
        answer = httpx.post(f"{base_url}/chat/completions", json=body, timeout=900).json()
        elapsed = time.perf_counter() - started
        timings = answer.get("timings", {})
        lines.append(
            f"{label:<38}{answer['usage']['completion_tokens']:5} tokens {elapsed:6.1f} s  "
            f"{timings.get('predicted_per_token_ms', 0):6.1f} ms/token"
        )
    return lines
