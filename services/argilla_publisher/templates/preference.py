"""The `preference` template: N responses side by side, rated, ranked, optionally corrected."""

from __future__ import annotations

from typing import Any

from services.argilla_publisher.templates.base import (
    MAX_RANKED_RESPONSES,
    BuiltinTemplate,
    argilla_question,
    prompt_markdown,
    suggestion,
    text_field,
)
from shared.events import Record
from shared.plugins import PluginOptionsError
from shared.templates import QuestionRole, QuestionSpec, TemplateRecordError
from shared.verdict import judge_verdict, to_five_point

FIVE_POINTS = (1, 2, 3, 4, 5)


class PreferenceTemplate(BuiltinTemplate):
    """N responses side by side: a 1-5 rating for each, a ranking, an optional correction.

    ``responses`` (default 2) is the number of responses per record. A record with a
    different number of responses is refused (`TemplateRecordError`) rather than padded with
    empty responses: an empty candidate would have to be ranked like a real one.

    Suggestions: each response's overall judge score (mean over repeats; the mean of the
    aspects without an ``overall`` one), rounded half up to 1..5, as its rating; the responses
    by descending score (or the pairwise winner first) as the ranking. Checklist counts from
    the ``additive`` rubric only order the ranking: they are not 1-5 ratings.
    """

    name = "preference"

    def __init__(self, responses: int = 2, guidelines: str | None = None) -> None:
        if isinstance(responses, bool) or not isinstance(responses, int):
            raise PluginOptionsError(f"template {self.name!r}: responses must be an integer")
        if not 2 <= responses <= MAX_RANKED_RESPONSES:
            raise PluginOptionsError(
                f"template {self.name!r}: responses must be between 2 and "
                f"{MAX_RANKED_RESPONSES}, got {responses}"
            )
        self.responses = responses
        super().__init__(guidelines)

    def __repr__(self) -> str:
        return f"PreferenceTemplate(responses={self.responses})"

    def _numbers(self) -> range:
        return range(1, self.responses + 1)

    def _ratings(self) -> list[QuestionSpec]:
        return [
            QuestionSpec(
                f"rating_response_{i}",
                "rating",
                QuestionRole.rating,
                response=i - 1,
                scale=FIVE_POINTS,
            )
            for i in self._numbers()
        ]

    def _ranking(self) -> QuestionSpec:
        values = tuple(f"response_{i}" for i in self._numbers())
        return QuestionSpec("ranking", "ranking", QuestionRole.ranking, labels=values)

    def _corrected(self) -> QuestionSpec:
        return QuestionSpec("corrected_response", "text", QuestionRole.written_response)

    def questions(self) -> tuple[QuestionSpec, ...]:
        return (*self._ratings(), self._ranking(), self._corrected())

    def _fields(self) -> list[Any]:
        return [
            text_field("prompt", "Prompt"),
            *(text_field(f"response_{i}", f"Response {i}") for i in self._numbers()),
        ]

    def _questions(self) -> list[Any]:
        ratings = [
            argilla_question(
                spec,
                f"Rate response {i}",
                description="1 = bad, 3 = acceptable, 5 = excellent",
            )
            for i, spec in zip(self._numbers(), self._ratings(), strict=True)
        ]
        ranking = argilla_question(
            self._ranking(),
            "Rank the responses, best first",
            label_texts={f"response_{i}": f"Response {i}" for i in self._numbers()},
        )
        corrected = argilla_question(
            self._corrected(),
            "Corrected response (optional)",
            description="An improved version of the best response, if it needs fixing",
            required=False,
            markdown=True,
        )
        return [*ratings, ranking, corrected]

    def _check(self, record: Record) -> None:
        if len(record.responses) != self.responses:
            raise TemplateRecordError(
                f"template {self.name!r} is set up for {self.responses} responses per record; "
                f"record {record.record_id} has {len(record.responses)}. Generate "
                f"{self.responses} candidates per record for this flow or set the template's "
                "`responses` option"
            )

    def _record_fields(self, record: Record) -> dict[str, str]:
        self._check(record)
        fields = {"prompt": prompt_markdown(record)}
        fields.update({f"response_{i + 1}": r.text for i, r in enumerate(record.responses)})
        return fields

    def _suggestions(self, record: Record) -> list[Any]:
        verdict = judge_verdict(record)
        if verdict is None:
            return []
        ratings, ranking = self._ratings(), self._ranking()
        suggestions = [
            suggestion(ratings[i].name, to_five_point(score), verdict.agent, verdict.confidence)
            for i, score in enumerate(verdict.scores)
            if score is not None and verdict.five_point
        ]
        if verdict.order is not None:
            values = [ranking.labels[i] for i in verdict.order]
            score = None if verdict.confidence is None else [verdict.confidence] * len(values)
            suggestions.append(suggestion(ranking.name, values, verdict.agent, score))
        return suggestions
