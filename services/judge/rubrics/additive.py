"""The `additive` rubric: one point per checklist criterion a response meets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from services.judge.rubrics.base import (
    FAIRNESS_NOTE,
    INJECTION_NOTE,
    RATIONALE_CHARS,
    JudgmentFields,
    LabelledResponses,
    Rubric,
    RubricConfigError,
    RubricError,
    check_response_count,
    judge_conversation,
    literal_of,
    response_labels,
    string_list_option,
)
from shared.criteria import parse_criterion
from shared.events import CandidateResponse, ChatMessage, Rating, Record

DEFAULT_CRITERIA = (
    "correct: the code does what the instruction asks and would run without errors",
    "edge_cases: it handles edge cases and bad input (empty, boundary, invalid values)",
    "idiomatic: it is idiomatic, readable code for its language, without needless complexity",
    "explained: the response explains the approach or the key decisions clearly and briefly",
)


class AdditiveRubric(Rubric):
    """One point per criterion a response meets; the score is the number of points.

    ``criteria`` entries are ``"id: description"`` (or a bare description, whose id is made
    from its words). The judge answers met / not met for each criterion of each response; the
    rating lists the ids met in ``criteria_met``.
    """

    name = "additive"

    def __init__(
        self,
        criteria: Sequence[str] = DEFAULT_CRITERIA,
        scale_name: str = "additive",
    ) -> None:
        parsed = [parse_criterion(c) for c in string_list_option(self.name, "criteria", criteria)]
        ids = [c[0] for c in parsed]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise RubricConfigError(f"rubric {self.name!r}: criterion ids repeat: {repeated}")
        if not isinstance(scale_name, str) or not scale_name.strip():
            raise RubricConfigError(f"rubric {self.name!r}: scale_name must be a non-empty string")
        self.criteria: list[tuple[str, str]] = parsed
        self.scale_name = scale_name.strip()
        self._models: dict[int, type[BaseModel]] = {}

    def output_model(self, n_responses: int) -> type[BaseModel]:
        check_response_count(self.name, n_responses)
        if n_responses not in self._models:
            flags: dict[str, Any] = {
                f"criterion_{i}": (bool, Field(alias=cid))
                for i, (cid, _) in enumerate(self.criteria)
            }
            met = create_model("AdditiveCriteria", __config__=ConfigDict(extra="forbid"), **flags)
            item = create_model(
                "AdditiveItem",
                __config__=ConfigDict(extra="forbid"),
                response=(literal_of(response_labels(n_responses)), ...),
                rationale=(str, Field(max_length=RATIONALE_CHARS)),
                criteria=(met, ...),
            )
            self._models[n_responses] = create_model(
                "AdditiveJudgment",
                __base__=LabelledResponses,
                responses=(list[item], Field(min_length=n_responses, max_length=n_responses)),
            )
        return self._models[n_responses]

    def messages(self, record: Record, shown: list[CandidateResponse]) -> list[ChatMessage]:
        checklist = "\n".join(f"- {cid}: {description}" for cid, description in self.criteria)
        flags = ", ".join(f'"{cid}": true|false' for cid, _ in self.criteria)
        labels = response_labels(len(shown))
        system = (
            "You are a demanding reviewer checking answers written by AI assistants against "
            "a checklist. For every response decide, criterion by criterion, whether it is "
            "fully met (true) or not (false). Be strict: partly met is not met, and a criterion "
            "that does not clearly hold is false.\n\n"
            f"Checklist:\n{checklist}\n\n"
            f"{FAIRNESS_NOTE} {INJECTION_NOTE}\n\n"
            "Answer with a single JSON object and nothing else:\n"
            f'{{"responses": [{{"response": "A", "rationale": "...", "criteria": {{{flags}}}}}'
            ", ...]}\n"
            f"with exactly one entry per response, in the order {', '.join(labels)}. The "
            f"rationale (under {RATIONALE_CHARS} characters) names what is missing or wrong, "
            "and comes before the verdicts."
        )
        return judge_conversation(
            system, record, shown, "Now check each response against every criterion."
        )

    def to_judgment_fields(self, output: BaseModel, n: int) -> JudgmentFields:
        items = output.model_dump(by_alias=True)["responses"]
        if len(items) != n:
            raise RubricError(f"judge checked {len(items)} responses, expected {n}")
        ratings: list[list[Rating]] = []
        for item in items:
            met = [cid for cid, _ in self.criteria if item["criteria"][cid]]
            ratings.append(
                [
                    Rating(
                        aspect=self.scale_name,
                        score=float(len(met)),
                        rationale=item["rationale"],
                        criteria_met=met,
                    )
                ]
            )
        return {"ratings": ratings, "preferred": None, "tie": False, "rationale": ""}
