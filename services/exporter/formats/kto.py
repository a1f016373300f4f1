"""`kto`: `prompt`, `completion`, `label`: every candidate with a clear good/bad answer.

Good or bad (`Candidate.acceptable`): a mean rating in the top or bottom quarter of its scale
(people's, or a 1-5 judge's 4-5 and 1-2 on auto-accepted records), a thumbs verdict, and
criteria (people's `code-scoring` answers, the `additive` judge's points): every criterion met
is good, a quarter of them or fewer bad, anything between no row. A pairwise verdict says which
response is better, not whether it is good: no row.
Load: `load_dataset("parquet", data_dir=<version>)` (or `load_dataset(<version>)`).
"""

from __future__ import annotations

from collections.abc import Iterator

from datasets import Features, Value

from services.exporter.aggregate import Aggregate
from services.exporter.formats.base import COMMON, Row, TrainingFormat, common


class KTOFormat(TrainingFormat):
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
                    **common(agg),
                },
            )
