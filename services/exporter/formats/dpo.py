"""`dpo`: `prompt`, `chosen`, `rejected`, `score_chosen`, `score_rejected`: the best against
the worst candidate, when the best is strictly better (`aggregate.better`): a higher score, or
with equal or no scores a better rank: people's ranking, or a pairwise judge's winner (chosen,
the other rejected, scores empty; a tie gives no row). Records of a flow with neither a judge
nor people have no preference: no row.
Load: `load_dataset("parquet", data_dir=<version>)` (or `load_dataset(<version>)`).
"""

from __future__ import annotations

from collections.abc import Iterator

from datasets import Features, Value

from services.exporter.aggregate import Aggregate
from services.exporter.formats.base import Row, TrainingFormat, better, common


class DPOFormat(TrainingFormat):
    name = "dpo"

    def features(self, split: str) -> Features:
        return self._pair_features(score_chosen=Value("float64"), score_rejected=Value("float64"))

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded or len(agg.candidates) < 2:
            return
        best, worst = agg.candidates[0], agg.candidates[-1]
        if not better(best, worst):
            return
        yield (
            split_of,
            {
                "prompt": self._prompt(agg),
                "chosen": self._completion(best),
                "rejected": self._completion(worst),
                "score_chosen": best.score,
                "score_rejected": worst.score,
                **common(agg),
            },
        )
