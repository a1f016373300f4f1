"""Format plugins (`loopline.formats`): aggregated records → rows with TRL's column names.

Every row also carries `record_id`, `auto_accepted` (accepted on the judge's verdict, without
people) and `disagreement` (the annotators disagreed on some question). Training formats split
rows into `train` and `test` by a hash of the record id (stable across versions); the
evaluation table has the splits `scores` and `win_rates`.

* `sft`: `messages` (conversational, the default) or, with `style: prompt-completion`,
  `prompt` and `completion`: the best candidate, unless the annotators called it bad;
* `dpo`: `prompt`, `chosen`, `rejected`, `score_chosen`, `score_rejected`: the best against
  the worst candidate, when the best is strictly better;
* `reward`: `prompt`, `chosen`, `rejected`, `margin`: one row per ranked pair (best-first
  order, strictly better scores when there are scores);
* `kto`: `prompt`, `completion`, `label`: every candidate with a clear good/bad answer;
* `eval`: per record and model `score` (people's), `judge_score` and `rank`, and the win rates
  between models (a higher score wins, equal scores tie).

`dpo`, `reward` and `kto` take `conversational: true` for prompts and completions as lists of
chat messages instead of strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any, ClassVar, Protocol, runtime_checkable

from datasets import Features, Value

from services.exporter.aggregate import Aggregate, Candidate, judge_scores_by_index
from services.exporter.stats import CurationStats
from shared.hashing import stable_fraction

Row = dict[str, Any]
MESSAGES = [{"role": Value("string"), "content": Value("string")}]
COMMON = {
    "record_id": Value("string"),
    "auto_accepted": Value("bool"),
    "disagreement": Value("bool"),
}


class FormatConfigError(ValueError):
    """A format's options from the flow file are unusable."""


@runtime_checkable
class Format(Protocol):
    name: str
    splits: tuple[str, ...]

    def features(self, split: str) -> Features: ...

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        """(split, row) pairs for one record; `split_of` is its train/test assignment."""
        ...

    def summary_rows(self, stats: CurationStats) -> Iterator[tuple[str, Row]]:
        """Rows computed over all records, written after them (e.g. win rates).

        `rows` must not keep state between records (an export may call it in several
        processes); what spans records comes from the pass's `stats`.
        """
        ...


def test_fraction(record_id: str, seed: str) -> float:
    """Where a record falls in [0, 1): the same for the same id and seed, in every version."""
    return stable_fraction(seed, record_id)


def _reject_unknown(name: str, unknown: dict[str, Any]) -> None:
    if unknown:
        raise FormatConfigError(f"format {name!r}: unknown option(s) {sorted(unknown)}")


def _common(agg: Aggregate) -> Row:
    return {
        "record_id": agg.record.record_id,
        "auto_accepted": agg.auto_accepted,
        "disagreement": bool(agg.disagreement),
    }


class _TrainingFormat:
    """Shared by the formats that split into train and test."""

    name: ClassVar[str]
    splits = ("train", "test")

    def __init__(self, conversational: bool = False, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown)
        self.conversational = bool(conversational)

    def _text(self) -> Any:
        return MESSAGES if self.conversational else Value("string")

    def _pair_features(self, **extra: Any) -> Features:
        """`prompt`, `chosen`, `rejected`, then `extra` and the common columns."""
        text = self._text()
        return Features({"prompt": text, "chosen": text, "rejected": text, **extra, **COMMON})

    def _prompt(self, agg: Aggregate) -> Any:
        return agg.prompt_messages() if self.conversational else agg.prompt_text()

    def _completion(self, candidate: Candidate) -> Any:
        if self.conversational:
            return [{"role": "assistant", "content": candidate.text}]
        return candidate.text

    def summary_rows(self, stats: CurationStats) -> Iterator[tuple[str, Row]]:
        return iter(())


class SFTFormat(_TrainingFormat):
    name = "sft"

    def __init__(self, style: str = "messages", **unknown: Any) -> None:
        _reject_unknown(self.name, unknown)
        if style not in ("messages", "prompt-completion"):
            raise FormatConfigError(
                f"format 'sft': style must be 'messages' or 'prompt-completion', got {style!r}"
            )
        super().__init__(conversational=False)
        self.style = style

    def features(self, split: str) -> Features:
        if self.style == "messages":
            return Features({"messages": MESSAGES, **COMMON})
        return Features({"prompt": Value("string"), "completion": Value("string"), **COMMON})

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded or not agg.candidates or agg.candidates[0].acceptable is False:
            return
        best = agg.candidates[0]
        if self.style == "messages":
            messages = [*agg.prompt_messages(), {"role": "assistant", "content": best.text}]
            yield split_of, {"messages": messages, **_common(agg)}
        else:
            yield split_of, {"prompt": agg.prompt_text(), "completion": best.text, **_common(agg)}


def _better(a: Candidate, b: Candidate) -> bool:
    """Whether `a`, ranked above `b`, is really better (not merely listed first)."""
    if a.score is not None and b.score is not None:
        return a.score > b.score
    return a.index is None or (a.acceptable is True and b.acceptable is not True)


class DPOFormat(_TrainingFormat):
    name = "dpo"

    def features(self, split: str) -> Features:
        return self._pair_features(score_chosen=Value("float64"), score_rejected=Value("float64"))

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded or len(agg.candidates) < 2:
            return
        best, worst = agg.candidates[0], agg.candidates[-1]
        if not _better(best, worst):
            return
        yield (
            split_of,
            {
                "prompt": self._prompt(agg),
                "chosen": self._completion(best),
                "rejected": self._completion(worst),
                "score_chosen": best.score,
                "score_rejected": worst.score,
                **_common(agg),
            },
        )


class RewardFormat(_TrainingFormat):
    name = "reward"

    def features(self, split: str) -> Features:
        return self._pair_features(margin=Value("float64"))

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded:
            return
        prompt = self._prompt(agg)
        for a, b in combinations(agg.candidates, 2):
            if not _better(a, b):
                continue
            margin = a.score - b.score if a.score is not None and b.score is not None else None
            yield (
                split_of,
                {
                    "prompt": prompt,
                    "chosen": self._completion(a),
                    "rejected": self._completion(b),
                    "margin": margin,
                    **_common(agg),
                },
            )


class KTOFormat(_TrainingFormat):
    name = "kto"

    def features(self, split: str) -> Features:
        text = self._text()
        return Features({"prompt": text, "completion": text, "label": Value("bool"), **COMMON})

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded:
            return
        prompt = self._prompt(agg)
        for candidate in agg.candidates:
            if candidate.acceptable is None:
                continue
            yield (
                split_of,
                {
                    "prompt": prompt,
                    "completion": self._completion(candidate),
                    "label": candidate.acceptable,
                    **_common(agg),
                },
            )


class EvalFormat:
    """Per record and model scores, then the win rates between models over all records."""

    name = "eval"
    splits = ("scores", "win_rates")

    def __init__(self, **unknown: Any) -> None:
        _reject_unknown(self.name, unknown)

    def features(self, split: str) -> Features:
        if split == "win_rates":
            return Features(
                {
                    "model_a": Value("string"),
                    "model_b": Value("string"),
                    "wins": Value("int64"),
                    "losses": Value("int64"),
                    "ties": Value("int64"),
                    "win_rate": Value("float64"),
                }
            )
        return Features(
            {
                "record_id": Value("string"),
                "prompt": Value("string"),
                "model": Value("string"),
                "response": Value("string"),
                "score": Value("float64"),
                "judge_score": Value("float64"),
                "rank": Value("int32"),
                "auto_accepted": Value("bool"),
                "disagreement": Value("bool"),
            }
        )

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded:
            return
        judge_scores = {} if agg.auto_accepted else judge_scores_by_index(agg.record)
        prompt = agg.prompt_text()
        for rank, c in enumerate(agg.candidates, start=1):
            yield (
                "scores",
                {
                    "record_id": agg.record.record_id,
                    "prompt": prompt,
                    "model": c.model,
                    "response": c.text,
                    "score": None if agg.auto_accepted else c.score,
                    "judge_score": c.score if agg.auto_accepted else judge_scores.get(c.index),
                    "rank": rank,
                    "auto_accepted": agg.auto_accepted,
                    "disagreement": bool(agg.disagreement),
                },
            )

    def summary_rows(self, stats: CurationStats) -> Iterator[tuple[str, Row]]:
        for rate in stats.wins.rates():
            yield (
                "win_rates",
                {
                    "model_a": rate.model_a,
                    "model_b": rate.model_b,
                    "wins": rate.wins,
                    "losses": rate.losses,
                    "ties": rate.ties,
                    "win_rate": rate.win_rate,
                },
            )
