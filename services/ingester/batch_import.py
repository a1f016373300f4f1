"""`loopline ingest PATH --flow NAME`: files and `datasets` folders into a flow.

Rows go through the same pipeline as the HTTP API (validate, redact, dedupe, route) and are
published to the real broker in batches. A bad row is reported with its line or row number and
the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from services.ingester.pipeline import IngestResult
from services.ingester.sources.mapping import Mapping
from services.ingester.sources.readers import Row, iter_rows

MAX_REASONS = 10


@dataclass
class ImportSummary:
    rows: int = 0
    ingested: int = 0
    duplicates: int = 0
    unrouted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few, "row N: path: message"

    def reject(self, where: str, why: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {why}")


def row_label(path: Path, fmt: str) -> str:
    return "line" if fmt == "jsonl" else "row"


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while batch := list(islice(rows, size)):
        yield batch


def check_mapping_columns(mapping: Mapping, first: dict[str, Any]) -> None:
    """Fail early when a mapped column is not in the source (a typo would reject every row)."""
    missing = sorted(set(mapping.columns) - set(first))
    if missing:
        raise ValueError(
            f"mapped column(s) {', '.join(missing)} not in the source; "
            f"its columns are: {', '.join(sorted(first))}"
        )


class Ingests(Protocol):
    """What rows are ingested through: the pipeline itself, or the running ingester's HTTP
    API (`loopline demo` sends its sample there when the ingester runs)."""

    async def ingest(self, items: list[dict[str, Any]]) -> IngestResult: ...


async def import_rows(
    path: Path,
    fmt: str,
    flow: str,
    pipeline: Ingests,
    mapping_for: Callable[[list[str]], Mapping],
    split: str | None = None,
    batch_size: int = 500,
    advance: Callable[[int], None] = lambda n: None,
) -> ImportSummary:
    """Import every row of `path` into `flow`, mapped by columns seen in the first row."""
    summary = ImportSummary()
    label = row_label(path, fmt)
    mapping: Mapping | None = None
    for batch in _batches(iter_rows(path, fmt, split), batch_size):
        inputs: list[dict[str, Any]] = []
        numbers: list[int] = []
        for row in batch:
            summary.rows += 1
            if row.data is None:
                summary.reject(f"{label} {row.number}", row.error or "unreadable")
                continue
            if mapping is None:
                mapping = mapping_for(list(row.data))
                check_mapping_columns(mapping, row.data)
            inputs.append(mapping.to_record_input(row.data, flow, path.name))
            numbers.append(row.number)
        if inputs:
            result = await pipeline.ingest(inputs)
            for rejection in result.rejected:
                why = "; ".join(f"{e.path}: {e.message}" for e in rejection.errors)
                summary.reject(f"{label} {numbers[rejection.index]}", why)
            summary.duplicates += len(result.duplicates)
            summary.unrouted += len(result.unrouted)
            summary.ingested += len(result.accepted) - len(result.duplicates)
        advance(len(batch))
    return summary
