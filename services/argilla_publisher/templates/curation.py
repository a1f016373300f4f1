"""The `curation` template: Dolly-style review of category, instruction, context and response."""

from __future__ import annotations

from typing import Any

from services.argilla_publisher.templates.base import (
    BuiltinTemplate,
    argilla_question,
    suggestion,
    text_field,
)
from shared.events import Record
from shared.templates import QuestionRole, QuestionSpec

ORIGINAL_AGENT = "original"
# The parts an annotator curates, with the title of each one's field and answer box.
PARTS = {
    "category": "Category",
    "instruction": "Instruction",
    "context": "Context",
    "response": "Response",
}
ANSWER_TITLES = {**PARTS, "context": "Context (leave empty if none)"}
OPTIONAL_FIELDS = ("category", "context", "response")
OPTIONAL_ANSWERS = ("context",)


def transcript(record: Record) -> str:
    """The instruction, or the conversation as a plain transcript."""
    if record.messages:
        return "\n\n".join(f"[{m.role.value}]\n{m.content}" for m in record.messages)
    return record.instruction or ""


def _final(part: str) -> QuestionSpec:
    return QuestionSpec(f"final_{part}", "text", QuestionRole.curated, field=part)


class CurationTemplate(BuiltinTemplate):
    """Dolly-style review: category, instruction, context and response, each editable.

    The fields come from ``metadata.category``, the instruction (a conversation as a plain
    transcript), the context and the first response. Each ``final_*`` question is pre-filled
    with the original (agent "original"). Rejecting an example is Argilla's discard action.
    """

    name = "curation"

    def questions(self) -> tuple[QuestionSpec, ...]:
        return tuple(_final(part) for part in PARTS)

    def originals(self, record: Record) -> dict[str, str]:
        """What the template shows: category, instruction, context, response ("" if none)."""
        category = record.metadata.get("category")
        return {
            "category": str(category).strip() if category is not None else "",
            "instruction": transcript(record),
            "context": record.context or "",
            "response": record.responses[0].text if record.responses else "",
        }

    def shown_responses(self, record: Record) -> tuple[int, ...]:
        return (0,) if record.responses else ()

    def _fields(self) -> list[Any]:
        return [
            text_field(part, title, required=part not in OPTIONAL_FIELDS, markdown=False)
            for part, title in PARTS.items()
        ]

    def _questions(self) -> list[Any]:
        return [
            argilla_question(spec, ANSWER_TITLES[part], required=part not in OPTIONAL_ANSWERS)
            for part, spec in zip(PARTS, self.questions(), strict=True)
        ]

    def _shown(self, record: Record) -> dict[str, str]:
        return {part: value for part, value in self.originals(record).items() if value.strip()}

    def _record_fields(self, record: Record) -> dict[str, str]:
        return self._shown(record)

    def _suggestions(self, record: Record) -> list[Any]:
        return [
            suggestion(_final(part).name, value, ORIGINAL_AGENT)
            for part, value in self._shown(record).items()
        ]
