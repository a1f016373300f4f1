"""`sft`: the best candidate, unless the annotators called it bad: a text people wrote, their
best-rated or top-ranked response, the judge's best (a pairwise judge's winner; on a tie the
first response), or for a flow with neither a judge nor people the first response.

`messages` (conversational, the default) or, with ``style: prompt-completion``, `prompt` and
`completion`. Load: `load_dataset("parquet", data_dir=<version>)` (or `load_dataset(<version>)`).
"""

from __future__ import annotations

from collections.abc import Iterator

from datasets import Features, Value

from services.exporter.aggregate import Aggregate
from services.exporter.formats.base import COMMON, MESSAGES, Row, TrainingFormat, common
from shared.plugins import PluginOptionsError

STYLES = ("messages", "prompt-completion")


class SFTFormat(TrainingFormat):
    name = "sft"

    def __init__(self, style: str = "messages") -> None:
        if style not in STYLES:
            raise PluginOptionsError(
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
            yield split_of, {"messages": messages, **common(agg)}
        else:
            yield split_of, {"prompt": agg.prompt_text(), "completion": best.text, **common(agg)}
