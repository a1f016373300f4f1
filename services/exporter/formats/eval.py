"""`eval`: per record and model `score` (people's), `judge_score` and `rank` (split `scores`),
then the win rates between models over all records (split `win_rates`: a higher score wins,
else a better rank, equal ones tie). The two tables are configurations of the version's card:
`load_dataset(<version>, "scores")["train"]`, `load_dataset(<version>, "win_rates")["train"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

from datasets import Features, Value

from services.exporter.aggregate import Aggregate, judge_scores_by_index
from services.exporter.formats.base import Format, Row
from services.exporter.stats import CurationStats

SCORES = Features(
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
WIN_RATES = Features(
    {
        "model_a": Value("string"),
        "model_b": Value("string"),
        "wins": Value("int64"),
        "losses": Value("int64"),
        "ties": Value("int64"),
        "win_rate": Value("float64"),
    }
)


class EvalFormat(Format):
    """Per record and model scores, then the win rates between models over all records."""

    name = "eval"
    splits = ("scores", "win_rates")

    def features(self, split: str) -> Features:
        return WIN_RATES if split == "win_rates" else SCORES

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
