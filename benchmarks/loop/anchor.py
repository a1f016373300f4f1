"""The anchor of the loop benchmark: the seed notebooks' way of working, on the same Argilla.

The same judged records (two responses, the judge's ratings and ranking as suggestions, made
by the same `preference` template the publisher uses) go in with the argilla SDK's
`dataset.records.log(...)`; the same two `agree` bots answer them through the same REST path
as in Loopline's run (`devstack.annotators.runner.annotate_flow`: the annotators' bulk
response upserts); then `dataset.records(with_responses=True)` is read back and a
`datasets.Dataset` of DPO rows is built from it (mean rating per response, the bots' ranking
breaking a tie), as a notebook would. Timed from the dataset's creation to the built
`Dataset`; the bots' accounts are made before the clock starts, as in Loopline's run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import argilla as rg
from bots import TimedTransport, bots
from cpu import CpuMeter, CpuUse
from datasets import Dataset

from services.argilla_publisher.templates.preference import PreferenceTemplate
from shared.events import Record
from shared.flows import parse_flows
from shared.settings import ArgillaSettings

RESPONSES = ("response_1", "response_2")


@dataclass
class AnchorResult:
    records: int
    seconds: float
    rows: int
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    bots: str = ""
    cpu: CpuUse | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def mean_rating(record: rg.Record, question: str) -> float | None:
    values = [r.value for r in record.responses[question] or [] if r.status == "submitted"]
    return statistics.mean(values) if values else None


def dpo_row(record: rg.Record) -> dict[str, Any] | None:
    """The record's DPO row from the annotators' answers: best-rated response chosen, the other
    rejected; a tie is broken by the first submitted ranking; None without answers."""
    scores = [mean_rating(record, f"rating_{name}") for name in RESPONSES]
    if any(score is None for score in scores):
        return None
    first, second = scores
    assert first is not None and second is not None
    best = 0 if first > second else 1
    if first == second:
        rankings = [r.value for r in record.responses["ranking"] or [] if r.value]
        if not rankings:
            return None
        top = min(rankings[0], key=lambda item: item["rank"])["value"]
        best = RESPONSES.index(top)
    chosen, rejected = RESPONSES[best], RESPONSES[1 - best]
    return {
        "record_id": record.id,
        "prompt": record.fields["prompt"],
        "chosen": record.fields[chosen],
        "rejected": record.fields[rejected],
        "score_chosen": scores[best],
        "score_rejected": scores[1 - best],
    }


async def run_anchor(
    argilla: ArgillaSettings,
    records: list[Record],
    run: str,
    bot_rate: float | None,
    meter: CpuMeter,
) -> AnchorResult:
    """One anchor run into a new dataset `anchor-<run>`, answered by the bots of flow `anchor`."""
    name = f"anchor-{run}"
    flow_name = "anchor"
    flow = parse_flows(
        {"flows": {flow_name: {"publish": {"plugin": "preference", "dataset": name}}}}, "anchor"
    ).flows[flow_name]
    await bots(argilla, flow_name, flow, idle_timeout_s=0)  # accounts only: no dataset yet
    client = rg.Argilla(api_url=argilla.api_url, api_key=argilla.api_key_value())
    template = PreferenceTemplate()
    steps: dict[str, float] = {}
    started = time.monotonic()
    cpu_before = meter.snapshot(started)

    def create_and_log() -> rg.Dataset:
        dataset = rg.Dataset(
            name=name, workspace=argilla.workspace, settings=template.settings(1), client=client
        ).create()
        dataset.records.log([template.to_record(r) for r in records])
        return dataset

    dataset = await asyncio.to_thread(create_and_log)
    steps["create + records.log"] = time.monotonic() - started
    mark = time.monotonic()
    timed = TimedTransport()
    report = await bots(argilla, flow_name, flow, 0, bot_rate, transport=timed)
    steps["bots answer"] = time.monotonic() - mark
    mark = time.monotonic()

    def read_back() -> list[rg.Record]:
        return list(dataset.records(with_suggestions=False, with_responses=True))

    read = await asyncio.to_thread(read_back)
    steps["records read back"] = time.monotonic() - mark
    mark = time.monotonic()
    rows = [row for row in map(dpo_row, read) if row is not None]
    built = Dataset.from_list(rows)
    steps["dpo Dataset built"] = time.monotonic() - mark
    seconds = time.monotonic() - started
    cpu = meter.use(cpu_before, meter.snapshot(time.monotonic()))
    client.http_client.close()
    answered = f"{report.line()}; Argilla calls: {timed.line()}"
    return AnchorResult(len(records), seconds, built.num_rows, steps, answered, cpu)
