"""`kto`: `prompt`, `completion`, `label`: every candidate with a clear good/bad answer."""

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
