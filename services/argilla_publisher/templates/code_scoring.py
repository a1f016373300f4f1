"""The `code-scoring` template: two code responses, each with a checklist of the criteria met."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from services.argilla_publisher.templates.base import (
    MAX_LABEL_TEXT_CHARS,
    MAX_LABEL_VALUE_CHARS,
    BuiltinTemplate,
    argilla_question,
    default_guidelines,
    prompt_markdown,
    suggestion,
    text_field,
)
from shared.criteria import parse_criterion
from shared.events import Record
from shared.plugins import PluginOptionsError
from shared.templates import QuestionRole, QuestionSpec, TemplateRecordError
from shared.verdict import agent_name, first_group, is_checklist

NONE_LABEL = "none"
NONE_TEXT = "None of the criteria"
RESPONSES = 2

DEFAULT_CODE_CRITERIA = (
    "correct: Correct: does what was asked and would run without errors",
    "edge_cases: Handles edge cases and bad input (empty, boundary, invalid values)",
    "idiomatic: Idiomatic, readable code for its language, without needless complexity",
    "explained: Explains the approach or key decisions clearly and briefly",
)


def check_criteria(template: str, criteria: Any) -> list[tuple[str, str]]:
    """`"id: description"` entries (see `parse_criterion`) as (id, description) pairs."""
    if isinstance(criteria, str) or not isinstance(criteria, Sequence) or not criteria:
        raise PluginOptionsError(f"template {template!r}: criteria must be a non-empty list")
    if not all(isinstance(c, str) and c.strip() for c in criteria):
        raise PluginOptionsError(f"template {template!r}: criteria must be non-empty strings")
    parsed = [parse_criterion(c.strip()) for c in criteria]
    ids = [cid for cid, _ in parsed]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise PluginOptionsError(f"template {template!r}: criterion ids repeat: {repeated}")
    if NONE_LABEL in ids:
        raise PluginOptionsError(
            f"template {template!r}: {NONE_LABEL!r} is reserved for 'meets none of the criteria'"
        )
    for cid, description in parsed:
        if len(cid) > MAX_LABEL_VALUE_CHARS or len(description) > MAX_LABEL_TEXT_CHARS:
            raise PluginOptionsError(
                f"template {template!r}: criterion {cid[:40]!r} is too long (ids up to "
                f"{MAX_LABEL_VALUE_CHARS} characters, descriptions up to "
                f"{MAX_LABEL_TEXT_CHARS})"
            )
    return parsed


class CodeScoringTemplate(BuiltinTemplate):
    """Two code responses, each with a checklist (multi-label) of the criteria it meets.

    ``criteria`` entries are ``"id: description"`` like the ``additive`` rubric's (whose
    ``criteria_met`` ids become the suggested labels); the default checks correctness, edge
    cases, idiom and explanation. Each checklist also has a ``none`` label, since Argilla
    cannot submit an empty multi-label answer. A record needs exactly two responses.
    """

    name = "code-scoring"

    def __init__(
        self, criteria: Sequence[str] = DEFAULT_CODE_CRITERIA, guidelines: str | None = None
    ) -> None:
        self.criteria = check_criteria(self.name, criteria)
        super().__init__(guidelines)

    def _default_guidelines(self) -> str:
        checklist = "\n".join(f"- **{cid}**: {text}" for cid, text in self.criteria)
        return default_guidelines(self.name).replace("{criteria}", checklist)

    def __repr__(self) -> str:
        return f"CodeScoringTemplate(criteria={[cid for cid, _ in self.criteria]})"

    def questions(self) -> tuple[QuestionSpec, ...]:
        labels = (*(cid for cid, _ in self.criteria), NONE_LABEL)
        return tuple(
            QuestionSpec(
                f"criteria_response_{i + 1}",
                "multi_label",
                QuestionRole.criteria,
                response=i,
                labels=labels,
                none_label=NONE_LABEL,
            )
            for i in range(RESPONSES)
        )

    def _fields(self) -> list[Any]:
        return [
            text_field("prompt", "Prompt"),
            *(text_field(f"response_{i}", f"Response {i}") for i in range(1, RESPONSES + 1)),
        ]

    def _questions(self) -> list[Any]:
        texts = {**dict(self.criteria), NONE_LABEL: NONE_TEXT}
        return [
            argilla_question(spec, f"Criteria response {i} fully meets", label_texts=texts)
            for i, spec in enumerate(self.questions(), start=1)
        ]

    def _record_fields(self, record: Record) -> dict[str, str]:
        if len(record.responses) != RESPONSES:
            raise TemplateRecordError(
                f"template {self.name!r} shows exactly {RESPONSES} responses; record "
                f"{record.record_id} has {len(record.responses)}"
            )
        return {
            "prompt": prompt_markdown(record),
            **{f"response_{i + 1}": r.text for i, r in enumerate(record.responses)},
        }

    def _suggestions(self, record: Record) -> list[Any]:
        n = len(record.responses)
        checked = first_group(
            [
                j
                for j in record.judgments
                if j.status == "ok" and len(j.ratings) == n and is_checklist(j)
            ]
        )
        if not checked:
            return []
        agent = agent_name(checked[0].judge_model)
        suggestions = []
        for i, spec in enumerate(self.questions()[:n]):
            votes: Counter[str] = Counter()
            for judgment in checked:
                met = {c for rating in judgment.ratings[i] for c in rating.criteria_met}
                votes.update(met if met else {NONE_LABEL})
            majority = [label for label, count in votes.items() if count * 2 > len(checked)]
            labels = [cid for cid, _ in self.criteria if cid in majority]
            if not labels and NONE_LABEL in majority:
                labels = [NONE_LABEL]
            if not labels:
                continue
            score = [votes[label] / len(checked) for label in labels] if len(checked) > 1 else None
            suggestions.append(suggestion(spec.name, labels, agent, score))
        return suggestions
