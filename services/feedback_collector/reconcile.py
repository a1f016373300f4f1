"""Reconciliation: what webhooks missed, read back from Argilla.

Webhooks are best effort: the worker gives up after a few retries, nothing is delivered while the
collector is down, and responses written by the owner through `records.log` fire none. So on
startup and every `reconcile_interval_s`, the collector lists, for every dataset a flow publishes
to (every annotator's dataset in split mode, and `-v<N>` versions), the records with their
responses, and emits:

- an `AnnotatorResponse` for every response whose `updated_at` is newer than the checkpoint
  minus `reconcile_overlap_s`;
- a `CompletedRecord` for every record in status `completed` with such a response (or itself
  updated, i.e. completed, since then).

Every watched dataset is listed in full on every pass: its `last_activity_at` would be a cheap
filter, but Argilla does not touch it when responses come in bulk (`records.log` by the owner),
exactly the responses no webhook reports. Completed records go out first, then the responses in
`responded_at` order, so the checkpoint recovered from the topic after a crash never skips an
unsent one. The checkpoint then moves to the newest `responded_at` seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.feedback_collector.argilla_reader import ArgillaReader
from services.feedback_collector.checkpoint import EPOCH
from services.feedback_collector.emitter import Emitter
from services.feedback_collector.mapping import (
    COMPLETED,
    WatchedDatasets,
    annotator_response,
    completed_record,
    loopline_record_id,
)
from shared.events import AnnotatorResponse, CompletedRecord

log = logging.getLogger("loopline.feedback_collector")


@dataclass(frozen=True)
class PassResult:
    datasets: int
    responses_seen: int
    responses_sent: int
    completed_sent: int
    checkpoint: datetime


class Reconciler:
    def __init__(
        self,
        reader: ArgillaReader,
        watched: WatchedDatasets,
        emitter: Emitter,
        *,
        overlap_s: float,
        page_size: int,
        checkpoint: datetime = EPOCH,
    ) -> None:
        self.reader = reader
        self.watched = watched
        self.emitter = emitter
        self.overlap = timedelta(seconds=overlap_s)
        self.page_size = page_size
        self.checkpoint = checkpoint

    async def run_pass(self) -> PassResult:
        since = max(self.checkpoint - self.overlap, EPOCH)
        datasets = self.watched.select(await self.reader.datasets())
        responses: list[AnnotatorResponse] = []
        completions: list[CompletedRecord] = []
        for dataset in datasets:
            async for page in self.reader.records(dataset.id, self.page_size):
                for record in page:
                    fresh = [r for r in record.responses if r.updated_at > since]
                    just_completed = record.status == COMPLETED and record.updated_at > since
                    if not fresh and not just_completed:
                        continue
                    record_id = loopline_record_id(record.external_id, record.metadata)
                    if record_id is None:
                        log.warning(
                            "record %s in %s/%s has no external id: its responses are skipped",
                            record.id,
                            dataset.workspace,
                            dataset.name,
                        )
                        continue
                    names = await self.reader.usernames([r.user_id for r in record.responses])
                    for response in fresh:
                        event = annotator_response(
                            record_id,
                            dataset.name,
                            names[response.user_id],
                            response.status,
                            response.values,
                            response.updated_at,
                        )
                        if event is not None:
                            responses.append(event)
                    if record.status == COMPLETED:
                        completion = completed_record(record, dataset.name, names.__getitem__)
                        if completion is not None:
                            completions.append(completion)

        sent_before = (self.emitter.responses_sent, self.emitter.completed_sent)
        for completion in sorted(completions, key=lambda c: c.completed_at):
            await self.emitter.completed(completion)
        for answer in sorted(responses, key=lambda r: r.responded_at):
            await self.emitter.response(answer)
            self.checkpoint = max(self.checkpoint, answer.responded_at)
        result = PassResult(
            datasets=len(datasets),
            responses_seen=len(responses),
            responses_sent=self.emitter.responses_sent - sent_before[0],
            completed_sent=self.emitter.completed_sent - sent_before[1],
            checkpoint=self.checkpoint,
        )
        log.info(
            "reconciled %d watched dataset(s): %d response(s) since %s, "
            "%d sent, %d completed record(s) sent; checkpoint %s",
            result.datasets,
            result.responses_seen,
            since.isoformat(),
            result.responses_sent,
            result.completed_sent,
            result.checkpoint.isoformat(),
        )
        return result
