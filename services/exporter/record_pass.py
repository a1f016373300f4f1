"""One export pass over a flow's records: from stored events to format rows, on one core or more.

Each stored event is parsed, aggregated and turned into the rows of every format being
exported, and counted for the curation report. Records go in chunks, in record_id order,
either through this process or through worker processes (`LOOPLINE_EXPORT__WORKERS`, for
stores of at least `LOOPLINE_EXPORT__PARALLEL_FROM` records). Chunks come back in order and
their counts are merged in order, so the files and the report are the same bytes whatever the
number of workers.

Workers are forked from a fork server (a clean single-threaded process that imports the
exporter once, at the first parallel export of a process or at `warm_up`), never from the
service itself, whose threads make a plain fork unsafe.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from services.exporter.aggregate import Aggregate, Questions, aggregate_completed, aggregate_judged
from services.exporter.formats.base import Format, Row
from services.exporter.stats import CurationStats
from services.exporter.store import HUMAN, RawRow, StoredRow
from services.exporter.versions import rows_table
from shared.events import CompletedRecord, Record
from shared.flows import Flow, PluginRef
from shared.hashing import stable_fraction
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import ExportSettings
from shared.templates import QuestionRole, Template

_IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: enough to keep it busy, bounded memory


def open_template(flow: Flow, registry: PluginRegistry) -> Template | None:
    """The flow's template (what its questions mean), or None for a flow without people."""
    if flow.publish is None:
        return None
    template: Template = registry.build(
        PluginKind.templates, flow.publish.plugin, flow.publish.options
    )
    return template


def checklist_size(flow: Flow, questions: Questions, registry: PluginRegistry) -> int | None:
    """How many criteria the flow's checklist judge checks (for good/bad labels from its
    points): the criteria of its rubric as the flow builds it (its `criteria`), else those of
    the flow's criteria questions; None when neither says."""
    if flow.judge is not None:
        rubric = registry.build(PluginKind.rubrics, flow.judge.plugin, flow.judge.options)
        criteria = getattr(rubric, "criteria", None)
        if isinstance(criteria, list | tuple) and criteria:
            return len(criteria)
    for spec in questions.specs.values():
        if spec.role == QuestionRole.criteria:
            return sum(label != spec.none_label for label in spec.labels)
    return None


def load_formats(refs: Sequence[PluginRef], registry: PluginRegistry) -> list[Format]:
    return [registry.build(PluginKind.formats, ref.plugin, ref.options) for ref in refs]


def aggregate_row(row: StoredRow, questions: Questions, criteria: int | None = None) -> Aggregate:
    if row.kind == HUMAN:
        return aggregate_completed(CompletedRecord.model_validate_json(row.body), questions)
    return aggregate_judged(Record.model_validate_json(row.body), criteria)


@dataclass
class Chunk:
    """What a run of records gave: each format's rows per split and the report's counts."""

    records: int
    tables: list[dict[str, pa.Table]]  # one per format, in the pass's order: split → rows
    stats: CurationStats


class RecordPass:
    """Turns stored events into rows: the flow's questions, the formats, the train/test split."""

    def __init__(
        self, flow: Flow, refs: Sequence[PluginRef], registry: PluginRegistry | None = None
    ) -> None:
        registry = registry or PluginRegistry()
        self.questions = Questions.of(open_template(flow, registry))
        self.criteria = checklist_size(flow, self.questions, registry)
        self.formats = load_formats(refs, registry)
        self.test_size = flow.export.test_size
        self.seed = flow.export.split_seed

    def run(self, rows: Sequence[RawRow]) -> Chunk:
        stats = CurationStats(self.questions.kinds, self.questions)
        out: list[dict[str, list[Row]]] = [{s: [] for s in fmt.splits} for fmt in self.formats]
        for row in map(StoredRow._make, rows):
            agg = aggregate_row(row, self.questions, self.criteria)
            stats.add(agg, row.event_time)
            test = stable_fraction(self.seed, row.record_id) < self.test_size
            split = "test" if test else "train"
            for fmt, by_split in zip(self.formats, out, strict=True):
                for split_of, made in fmt.rows(agg, split):
                    by_split[split_of].append(made)
        # Arrow tables, not dicts, go back to the writer: built where the rows are made, and
        # passed between processes as buffers.
        tables = [
            {s: rows_table(made, fmt.features(s)) for s, made in by_split.items() if made}
            for fmt, by_split in zip(self.formats, out, strict=True)
        ]
        return Chunk(len(rows), tables, stats)


def workers_for(settings: ExportSettings, records: int) -> int:
    """The worker processes an export of `records` records uses (1: none, this process)."""
    return settings.workers if records >= settings.parallel_from else 1


def _preload() -> list[str]:
    """What the fork server imports once, so that every worker starts with it: this module,
    and the parent's main module, which multiprocessing re-runs in each worker."""
    names = ["__main__", __name__]
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    if main_spec is not None:
        names.append(main_spec.name)
    return names


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_preload())
    return context


def warm_up() -> None:
    """Start the fork server now: it imports the exporter (a few seconds) in the background,
    so that a large export soon after (say, once the topics are read) starts at once."""
    _context()
    multiprocessing.forkserver.ensure_running()


_worker: RecordPass | None = None


def _start_worker(flow: Flow, refs: tuple[PluginRef, ...]) -> None:
    global _worker
    _worker = RecordPass(flow, refs)


def _run_in_worker(rows: list[RawRow]) -> Chunk:
    assert _worker is not None, "worker used before its initializer ran"
    return _worker.run(rows)


def run_pass(
    flow: Flow,
    refs: Sequence[PluginRef],
    batches: Iterable[list[RawRow]],
    workers: int = 1,
    registry: PluginRegistry | None = None,
) -> Iterator[Chunk]:
    """A chunk per batch of stored rows, in order, computed here or by `workers` processes.

    A custom `registry` (plugins that are not installed entry points) keeps the pass here.
    """
    if workers <= 1 or registry is not None:
        here = RecordPass(flow, refs, registry)
        yield from map(here.run, batches)
        return
    # A worker that dies (killed, out of memory) fails the pass with BrokenProcessPool; the
    # export is then tried again, like any failed export.
    pool = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=_start_worker, initargs=(flow, tuple(refs))
    )
    try:
        pending: deque[Future[Chunk]] = deque()
        for batch in batches:
            pending.append(pool.submit(_run_in_worker, batch))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
