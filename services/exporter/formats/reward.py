"""`reward`: `prompt`, `chosen`, `rejected`, `margin`: one row per pair where the first is
strictly better (`aggregate.better`: a higher score, else a better rank from people's ranking
or a pairwise judge's winner); `margin` is the score difference, empty without scores.
Load: `load_dataset("parquet", data_dir=<version>)` (or `load_dataset(<version>)`).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations

from datasets import Features, Value

from services.exporter.aggregate import Aggregate
from services.exporter.formats.base import Row, TrainingFormat, better, common


class RewardFormat(TrainingFormat):
    name = "reward"

    def features(self, split: str) -> Features:
        return self._pair_features(margin=Value("float64"))

    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        if agg.excluded:
            return
        prompt = self._prompt(agg)
        for a, b in combinations(agg.candidates, 2):
            if not better(a, b):
                continue
            margin = a.score - b.score if a.score is not None and b.score is not None else None
            yield (
                split_of,
                {
                    "prompt": prompt,
                    "chosen": self._completion(a),
                    "rejected": self._completion(b),
                    "margin": margin,
                    **common(agg),
                },
            )
