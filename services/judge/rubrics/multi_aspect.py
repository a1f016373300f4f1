"""The `multi-aspect` rubric: a 1-5 score per aspect for every response, with the reasons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from services.judge.rubrics.base import (
    ASPECT_RATIONALE_CHARS,
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
from shared.events import CandidateResponse, ChatMessage, Rating, Record

ASPECT_GUIDE: dict[str, str] = {
    "helpfulness": (
        "How much the response actually helps the user: it addresses the real need, is "
        "useful and complete, at a sensible level of detail."
    ),
    "honesty": (
        "Whether the response is candid about its limits: it signals uncertainty where it "
        "should, does not bluff, and says so when it cannot or will not do something."
    ),
    "instruction_following": (
        "Whether the response does what was asked, in the form asked, and respects every "
        "explicit constraint (format, length, language, scope)."
    ),
    "truthfulness": (
        "Whether its facts, claims and any code behaviour are correct, with nothing invented "
        "and nothing contradicting the prompt or context."
    ),
    "overall": "All things considered, how good this response is as the answer to this prompt.",
}

_SCALE = (
    "Scores are integers: 1 = fails badly, 2 = poor, 3 = acceptable but with clear flaws, "
    "4 = good with minor issues, 5 = excellent."
)


class AspectScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=ASPECT_RATIONALE_CHARS)
    score: int = Field(ge=1, le=5)


DEFAULT_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness", "overall")

_RATIONALE_MODES: tuple[str, ...] = ("per-response", "per-aspect")


class MultiAspectRubric(Rubric):
    """Every response gets a 1-5 score on every aspect, with the reasons.

    ``rationale: per-response`` (the default) asks for one short rationale per response that
    covers its aspects, then the scores: about a quarter of the tokens of ``per-aspect``, which
    asks for a one-sentence reason before every single score. Either way each `Rating` carries
    the rationale that explains it.
    """

    name = "multi-aspect"

    def __init__(
        self,
        aspects: Sequence[str] = DEFAULT_ASPECTS,
        rationale: str = "per-response",
    ) -> None:
        self.aspects = string_list_option(self.name, "aspects", aspects)
        if rationale not in _RATIONALE_MODES:
            raise RubricConfigError(
                f"rubric {self.name!r}: rationale must be one of {list(_RATIONALE_MODES)}, "
                f"got {rationale!r}"
            )
        self.per_aspect = rationale == "per-aspect"
        self._models: dict[int, type[BaseModel]] = {}

    def output_model(self, n_responses: int) -> type[BaseModel]:
        check_response_count(self.name, n_responses)
        if n_responses not in self._models:
            fields: dict[str, Any] = {"response": (literal_of(response_labels(n_responses)), ...)}
            if not self.per_aspect:
                fields["rationale"] = (str, Field(max_length=RATIONALE_CHARS))
            score: Any = AspectScore if self.per_aspect else Annotated[int, Field(ge=1, le=5)]
            for i, aspect in enumerate(self.aspects):
                fields[f"aspect_{i}"] = (score, Field(alias=aspect))
            item = create_model("MultiAspectItem", __config__=ConfigDict(extra="forbid"), **fields)
            self._models[n_responses] = create_model(
                "MultiAspectJudgment",
                __base__=LabelledResponses,
                responses=(list[item], Field(min_length=n_responses, max_length=n_responses)),
            )
        return self._models[n_responses]

    def _answer_format(self) -> str:
        """The JSON shape to answer in, and what a rationale is."""
        if self.per_aspect:
            scores = ", ".join(f'"{a}": {{"rationale": "...", "score": 1-5}}' for a in self.aspects)
            return (
                f'{{"responses": [{{"response": "A", {scores}}}, ...]}}\n'
                f"Each rationale is one short sentence (under {ASPECT_RATIONALE_CHARS} "
                "characters) written before its score."
            )
        scores = ", ".join(f'"{a}": 1-5' for a in self.aspects)
        return (
            f'{{"responses": [{{"response": "A", "rationale": "...", {scores}}}, ...]}}\n'
            f"Each rationale is one or two short sentences (under {RATIONALE_CHARS} "
            "characters) on the response's main strengths and flaws, written before its scores."
        )

    def messages(self, record: Record, shown: list[CandidateResponse]) -> list[ChatMessage]:
        guide = "\n".join(
            f"- {aspect}: {ASPECT_GUIDE.get(aspect, 'judge the response on this aspect.')}"
            for aspect in self.aspects
        )
        labels = response_labels(len(shown))
        system = (
            "You are a strict, impartial reviewer of answers written by AI assistants. "
            "You score each candidate response on several aspects.\n\n"
            f"Aspects:\n{guide}\n\n{_SCALE}\n\n"
            "Score every response on its own merits against the prompt; several responses may "
            f"share a score. {FAIRNESS_NOTE} {INJECTION_NOTE}\n\n"
            "Answer with a single JSON object and nothing else:\n"
            f"{self._answer_format()}\n"
            f"There is exactly one entry per response, in the order {', '.join(labels)}."
        )
        return judge_conversation(system, record, shown, "Now score each response on each aspect.")

    def to_judgment_fields(self, output: BaseModel, n: int) -> JudgmentFields:
        items = output.model_dump(by_alias=True)["responses"]
        if len(items) != n:
            raise RubricError(f"judge rated {len(items)} responses, expected {n}")
        return {
            "ratings": [self._ratings(item) for item in items],
            "preferred": None,
            "tie": False,
            "rationale": "",
        }

    def _ratings(self, item: dict[str, Any]) -> list[Rating]:
        if self.per_aspect:
            return [
                Rating(aspect=a, score=float(item[a]["score"]), rationale=item[a]["rationale"])
                for a in self.aspects
            ]
        return [
            Rating(aspect=a, score=float(item[a]), rationale=item["rationale"])
            for a in self.aspects
        ]
