"""The format contract (`loopline.formats`) and what the built-in formats share.

A format turns aggregated records (`services.exporter.aggregate.Aggregate`) into dataset rows.
Every built-in row also carries `record_id`, `auto_accepted` (accepted on the judge's verdict,
without people) and `disagreement` (the annotators disagreed on some question). Training
formats split rows into `train` and `test` by a hash of the record id (stable across versions).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

from datasets import Features, Value

from services.exporter.aggregate import Aggregate, Candidate, better
from services.exporter.stats import CurationStats
from shared.plugins import Plugin, PluginOptionsError

Row = dict[str, Any]
__all__ = ["COMMON", "MESSAGES", "Format", "Row", "TrainingFormat", "better", "common"]
MESSAGES = [{"role": Value("string"), "content": Value("string")}]
COMMON = {
    "record_id": Value("string"),
    "auto_accepted": Value("bool"),
    "disagreement": Value("bool"),
}


class Format(Plugin):
    """The contract of a format plugin (entry-point group ``loopline.formats``).

    Built from the flow's ``export.formats[*].options`` as ``cls(**options)`` (see `Plugin`).
    A format must provide:

    * ``name``: its plugin name; ``splits``: the names of the splits it writes;
    * ``features(split)``: the `datasets.Features` of the split's rows (one column per key);
    * ``rows(agg, split_of)``: ``(split, row)`` pairs for one aggregated record, zero or more;
      ``split_of`` is the record's train/test assignment, which a training format follows.
      Each row's keys are exactly the split's feature columns. An excluded record
      (`Aggregate.excluded`) yields no training rows. `rows` keeps no state between records:
      an export may call it in several processes;
    * ``summary_rows(stats)``: rows computed over all records, written after them (e.g. win
      rates), from the pass's `CurationStats`; default: none.
    """

    name: ClassVar[str]
    splits: tuple[str, ...]

    @abstractmethod
    def features(self, split: str) -> Features:
        """The columns and types of `split`."""

    @abstractmethod
    def rows(self, agg: Aggregate, split_of: str) -> Iterator[tuple[str, Row]]:
        """(split, row) pairs for one record; `split_of` is its train/test assignment."""

    def summary_rows(self, stats: CurationStats) -> Iterator[tuple[str, Row]]:
        """Rows computed over all records, written after them."""
        return iter(())


def common(agg: Aggregate) -> Row:
    """The columns every built-in row ends with."""
    return {
        "record_id": agg.record.record_id,
        "auto_accepted": agg.auto_accepted,
        "disagreement": bool(agg.disagreement),
    }


class TrainingFormat(Format):
    """Shared by the formats that split into train and test: prompts and completions as
    strings, or with ``conversational: true`` as lists of chat messages."""

    splits = ("train", "test")

    def __init__(self, conversational: bool = False) -> None:
        if not isinstance(conversational, bool):
            raise PluginOptionsError(
                f"format {self.name!r}: conversational must be true or false, "
                f"got {conversational!r}"
            )
        self.conversational = conversational

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
