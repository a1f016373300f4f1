"""Reconciliation: what webhooks missed, read back from Argilla.

Webhooks are best effort: the worker gives up after a few retries, nothing is delivered while the
collector is down, and responses written by the owner through `records.log` fire none. So on
startup and every `reconcile_interval_s`, the collector lists, for every dataset a flow publishes
to (every annotator's dataset in split mode, and `-v<N>` versions), the records with their
responses, a page at a time, and emits as it goes:

- an `AnnotatorResponse` for every response whose `updated_at` is newer than the dataset's
  progress minus `reconcile_overlap_s`;
- a `CompletedRecord` for every record in status `completed` with such a response (or itself
  updated, i.e. completed, since then), unless it was announced with the same responses.

Nothing is held beyond the page being read, so a dataset read from its start (a new collector,
or its state topic emptied) costs the same memory as a pass of a few records.

The dataset's progress (`state.py`) is written once its last page was read and every event of
the pass was acknowledged, as the moment the pass started: every response written before then
was listed, so was emitted. A crash at any point leaves the previous progress, and the next pass
reads from there again (its duplicates are harmless). So does a pass during which the dataset
lost records (its count went down between the first and the last page): pages are read by
offset, so a deletion shifts the later records and one may have been passed over. The overlap
covers the rest: a response written while its page was being read, committed late, or stamped
by a clock behind the collector's (up to `reconcile_overlap_s` of skew between the collector
and Argilla).

Every watched dataset is listed in full on every pass: its `last_activity_at` would be a cheap
filter, but Argilla does not touch it when responses come in bulk (`records.log` by the owner),
exactly the responses no webhook reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.feedback_collector.argilla_reader import ArgillaReader
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import (
    COMPLETED,
    ArgillaDataset,
    ArgillaRecord,
    WatchedDatasets,
    annotator_response,
    completed_record,
    loopline_record_id,
)
from shared.argilla_metadata import trace_from_metadata

log = logging.getLogger("loopline.feedback_collector")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PassResult:
    datasets: int = 0
    responses_seen: int = 0
    responses_sent: int = 0
    completed_sent: int = 0
    dead_lettered: int = 0
    since: dict[str, datetime] = field(default_factory=dict)  # dataset -> read from


class Reconciler:
    def __init__(
        self,
        reader: ArgillaReader,
        watched: WatchedDatasets,
        emitter: Emitter,
        *,
        overlap_s: float,
        page_size: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.reader = reader
        self.watched = watched
        self.emitter = emitter
        self.overlap = timedelta(seconds=overlap_s)
        self.page_size = page_size
        self.clock = clock

    async def run_pass(self) -> PassResult:
        datasets = self.watched.select(await self.reader.datasets())
        result = PassResult(datasets=len(datasets))
        before = (
            self.emitter.responses_sent,
            self.emitter.completed_sent,
            self.emitter.dead_lettered,
        )
        for dataset in datasets:
            await self._dataset(dataset, result)
        result.responses_sent = self.emitter.responses_sent - before[0]
        result.completed_sent = self.emitter.completed_sent - before[1]
        result.dead_lettered = self.emitter.dead_lettered - before[2]
        log.info(
            "reconciled %d watched dataset(s): %d response(s) seen, %d sent, "
            "%d completed record(s) sent, %d dead-lettered",
            result.datasets,
            result.responses_seen,
            result.responses_sent,
            result.completed_sent,
            result.dead_lettered,
        )
        return result

    async def _dataset(self, dataset: ArgillaDataset, result: PassResult) -> None:
        started = self.clock()
        done = self.emitter.state.progress(dataset.id)
        since = EPOCH if done is None else max(done - self.overlap, EPOCH)
        result.since[f"{dataset.workspace}/{dataset.name}"] = since
        totals: list[int] = []
        async for page in self.reader.records(dataset.id, self.page_size):
            if page.total is not None:
                totals.append(page.total)
            for record in page.items:
                result.responses_seen += await self._record(dataset, record, since)
        if totals and totals[-1] < totals[0]:
            # Records were deleted meanwhile: the pages after them shifted, and a record may
            # have been passed over. The next pass reads from the same progress again.
            log.warning(
                "records were deleted from %s/%s during its pass (%d -> %d): its progress "
                "stays at %s",
                dataset.workspace,
                dataset.name,
                totals[0],
                totals[-1],
                done.isoformat() if done is not None else "the start",
            )
            return
        await self.emitter.state.save_progress(
            dataset.id, started, workspace=dataset.workspace, dataset=dataset.name
        )
        log.debug(
            "reconciled %s/%s from %s; progress %s",
            dataset.workspace,
            dataset.name,
            since.isoformat(),
            started.isoformat(),
        )

    async def _record(self, dataset: ArgillaDataset, record: ArgillaRecord, since: datetime) -> int:
        """Emit what is new about one record; the number of its fresh responses."""
        fresh = [r for r in record.responses if r.updated_at > since]
        just_completed = record.status == COMPLETED and record.updated_at > since
        if not fresh and not just_completed:
            return 0
        record_id = loopline_record_id(record.external_id, record.metadata)
        if record_id is None:
            log.warning(
                "record %s in %s/%s has no external id: its responses are skipped",
                record.id,
                dataset.workspace,
                dataset.name,
            )
            return 0
        names = await self.reader.usernames([r.user_id for r in record.responses])
        traceparent = trace_from_metadata(record.metadata)
        if record.status == COMPLETED:
            completion = completed_record(record, dataset.name, names.__getitem__)
            if completion is not None:
                await self.emitter.completed(completion, dataset.id, record.id, traceparent)
        for response in sorted(fresh, key=lambda r: r.updated_at):
            event = annotator_response(
                record_id,
                dataset.name,
                names[response.user_id],
                response.status,
                response.values,
                response.updated_at,
            )
            if event is not None:
                await self.emitter.response(event, record.id, traceparent)
        return len(fresh)
