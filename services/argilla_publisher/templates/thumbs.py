"""The `thumbs` template: one response, good or bad, and an optional comment."""

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
from shared.templates import QuestionRole, QuestionSpec, TemplateRecordError
from shared.verdict import judge_verdict

VERDICT = QuestionSpec(
    "verdict", "label", QuestionRole.verdict, response=0, labels=("good", "bad"), good=("good",)
)
COMMENT = QuestionSpec("comment", "text")


class ThumbsTemplate(BuiltinTemplate):
    """One response (the app's, else the first): good or bad, and an optional comment.

    Suggestion: "good" when the judge scored the shown response 4 or more (1-5), "bad" at 2
    or less, none in between.
    """

    name = "thumbs"

    def questions(self) -> tuple[QuestionSpec, ...]:
        return (VERDICT, COMMENT)

    def shown_responses(self, record: Record) -> tuple[int, ...]:
        return (self.shown_index(record),) if record.responses else ()

    @staticmethod
    def shown_index(record: Record) -> int:
        """The index of the response the record shows: the app's, else the first."""
        if not record.responses:
            raise TemplateRecordError(
                f"template 'thumbs' needs a response to judge; record {record.record_id} has none"
            )
        return next((i for i, r in enumerate(record.responses) if r.source == "app"), 0)

    def _fields(self) -> list[Any]:
        return [text_field("prompt", "Prompt"), text_field("response", "Response")]

    def _questions(self) -> list[Any]:
        return [
            argilla_question(VERDICT, "Is this response good?"),
            argilla_question(
                COMMENT,
                "Comment (optional)",
                description="What is wrong or missing?",
                required=False,
            ),
        ]

    def _record_fields(self, record: Record) -> dict[str, str]:
        return {
            "prompt": prompt_markdown(record),
            "response": record.responses[self.shown_index(record)].text,
        }

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is None or not verdict.five_point:
            return []
        score = verdict.scores[self.shown_index(record)]
        if score is None:
            return []
        if score >= 4:
            label = "good"
        elif score <= 2:
            label = "bad"
        else:
            return []
        return [suggestion(VERDICT.name, label, verdict.agent, verdict.confidence)]
