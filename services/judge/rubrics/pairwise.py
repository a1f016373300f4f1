"""The `pairwise` rubric: which of two responses is better, or a tie."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.judge.rubrics.base import (
    FAIRNESS_NOTE,
    INJECTION_NOTE,
    RATIONALE_CHARS,
    JudgmentFields,
    Rubric,
    check_response_count,
    judge_conversation,
)
from shared.events import CandidateResponse, ChatMessage, Record


class PairwiseOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=RATIONALE_CHARS)
    winner: Literal["A", "B", "tie"]


class PairwiseRubric(Rubric):
    """Which of exactly two responses is better, or a tie; no per-response scores.

    It takes no options.
    """

    name = "pairwise"

    def output_model(self, n_responses: int) -> type[BaseModel]:
        check_response_count(self.name, n_responses, exactly=2)
        return PairwiseOutput

    def messages(self, record: Record, shown: list[CandidateResponse]) -> list[ChatMessage]:
        system = (
            "You are an impartial reviewer comparing two answers written by AI assistants to "
            "the same prompt. Decide which one better serves the user: correct, does what was "
            "asked, honest about uncertainty, clear. Prefer the response with fewer and less "
            "serious problems; answer tie only when neither is better in any way that matters.\n\n"
            f"{FAIRNESS_NOTE} {INJECTION_NOTE}\n\n"
            "Answer with a single JSON object and nothing else:\n"
            '{"rationale": "...", "winner": "A" | "B" | "tie"}\n'
            f"The rationale (under {RATIONALE_CHARS} characters) states the decisive "
            "difference, and comes before the winner."
        )
        return judge_conversation(
            system,
            record,
            shown,
            "Which response is better: A, B, or tie?",
            introduce="The two candidate responses:",
        )

    def to_judgment_fields(self, output: BaseModel, n: int) -> JudgmentFields:
        verdict = PairwiseOutput.model_validate(output.model_dump())
        if verdict.winner == "tie":
            return {"ratings": [], "preferred": None, "tie": True, "rationale": verdict.rationale}
        preferred = 0 if verdict.winner == "A" else 1
        return {"ratings": [], "preferred": preferred, "tie": False, "rationale": verdict.rationale}
