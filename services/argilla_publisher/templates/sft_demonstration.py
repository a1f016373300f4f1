"""The `sft-demonstration` template: the prompt alone; the annotator writes the ideal response."""

from __future__ import annotations

from typing import Any

from services.argilla_publisher.templates.base import (
    BuiltinTemplate,
    argilla_question,
    prompt_markdown,
    suggestion,
    text_field,
)
from shared.events import Record
from shared.templates import QuestionRole, QuestionSpec
from shared.verdict import agent_name, judge_verdict

IDEAL = QuestionSpec("ideal_response", "text", QuestionRole.written_response)


class SFTDemonstrationTemplate(BuiltinTemplate):
    """The prompt alone; the annotator writes the ideal response (pre-filled with a draft:
    the judge's best response, else the app's)."""

    name = "sft-demonstration"

    def questions(self) -> tuple[QuestionSpec, ...]:
        return (IDEAL,)

    def _fields(self) -> list[Any]:
        return [text_field("prompt", "Prompt")]

    def _questions(self) -> list[Any]:
        return [
            argilla_question(
                IDEAL,
                "Write the ideal response",
                description="Edit the draft, if any, into the best possible answer",
                markdown=True,
            )
        ]

    def _record_fields(self, record: Record) -> dict[str, str]:
        return {"prompt": prompt_markdown(record)}

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is not None and verdict.best is not None:
            text = record.responses[verdict.best].text
            if text.strip():
                return [suggestion(IDEAL.name, text, verdict.agent, verdict.confidence)]
        app = next((r for r in record.responses if r.source == "app" and r.text.strip()), None)
        if app is not None:
            return [suggestion(IDEAL.name, app.text, agent_name(app.model))]
        return []
