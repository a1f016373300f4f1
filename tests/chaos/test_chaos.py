"""Nothing lost, nothing doubled: records flow through `generations-to-argilla` and `default`
on the durable broker while each of the six services, then the broker, then Argilla is killed
with SIGKILL and restarted, the LLM endpoint fails 30% of its calls (5xx, 429, garbled JSON,
hangs) and the export directory is read-only for a while. Counted by record id at the end:
every record routed to people is in Argilla once and completed, every record is in the latest
export version of each format exactly once, and no dead-letter topic holds anything."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import pytest

import devstack as stack
from devstack.scripted_llm import ScriptedLLM
from shared.flows import load_flows
from shared.settings import ArgillaSettings
from tests.chaos.driver import Chaos, Feed, Say, feed, payload, run_chaos
from tests.chaos.figures import Figures
from tests.chaos.flaky_llm import FlakyResponder
from tests.chaos.sizes import ChaosSize
from tests.chaos.system import LLM_TIMEOUT_S, ChaosSystem
from tests.chaos.tally import STAGE_TOPICS, Observed, observe

FAIL_SHARE = 0.3
POLL_S = 5.0
PROGRESS_EVERY_S = 20.0
STALLED_S = 180.0


def progress_line(seen: Observed, waiting: set[str]) -> str:
    stages = ", ".join(
        f"{topic.split('.')[-1]} {len(seen.topics[topic].keys() & seen.flows.keys())}"
        for topic in STAGE_TOPICS
    )
    exports = ", ".join(
        f"{flow}/{fmt} {version} {len(ids)} rows"
        for flow, formats in seen.exports.items()
        for fmt, (version, ids) in formats.items()
    )
    completed = len(seen.completed.keys() & seen.flows.keys())
    return (
        f"{len(waiting)} of {len(seen.flows)} records on their way; {stages}, to people "
        f"{len(seen.to_people)}, completed {completed}; exports: {exports or 'none yet'}; "
        f"dead letters {len(seen.dead_letters)}"
    )


async def drain(system: ChaosSystem, fed: Feed, timeout_s: float, say: Say) -> bool:
    """Wait until every fed record is finished or dead-lettered; False after `timeout_s`, or
    once nothing has moved for `STALLED_S` (what is left then is not coming)."""
    flows_config = load_flows(system.flows_dir)
    deadline = time.monotonic() + timeout_s
    shown = 0.0
    last, moved = "", time.monotonic()
    while True:
        seen = await observe(system.kafka, None, flows_config, system.export_dir, fed.accepted)
        waiting = seen.waiting()
        if not waiting:
            say(f"drained: {progress_line(seen, waiting)}")
            return True
        line = progress_line(seen, waiting)
        if line != last:
            last, moved = line, time.monotonic()
        stalled = time.monotonic() - moved > STALLED_S
        if time.monotonic() > deadline or stalled:
            why = f"nothing moved for {STALLED_S:.0f} s" if stalled else "timed out"
            say(f"gave up waiting ({why}): {line}")
            for record_id in sorted(waiting)[:20]:
                say(f"  {record_id} ({fed.accepted[record_id]}): {seen.where(record_id)}")
            return False
        if time.monotonic() - shown > PROGRESS_EVERY_S:
            shown = time.monotonic()
            say(f"draining: {progress_line(seen, waiting)}")
        await asyncio.sleep(POLL_S)


async def test_nothing_lost_nothing_doubled(
    chaos_stack: stack.StackConfig,
    size: ChaosSize,
    targets: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def say(line: str) -> None:
        """Shown as it happens, also under `make test` (outside pytest's capture)."""
        with capsys.disabled():
            print(line, flush=True)

    started = time.monotonic()
    responder = FlakyResponder(FAIL_SHARE, hang_s=LLM_TIMEOUT_S + 2)
    fed, chaos = Feed(), Chaos(say)
    async with ScriptedLLM(responder=responder) as llm:
        system = ChaosSystem(chaos_stack, tmp_path, llm.base_url)
        try:
            await system.start()
            took = time.monotonic() - started
            say(f"\nchaos ({size.name} form): the six services healthy after {took:.0f} s")
            run = uuid.uuid4().hex[:6]
            records = [payload(run, i) for i in range(size.records)]
            chaos.started = time.monotonic()
            feeding = asyncio.create_task(
                feed(system.ingest_url, records, size.batch, size.every_s, fed)
            )
            try:
                await run_chaos(system, chaos, size.rounds, size.gap_s, targets)
                await feeding
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
            chaos.note(f"all {len(fed.accepted)} records accepted; the attacks are over")
            drained = await drain(system, fed, size.drain_timeout_s, say)
            argilla = ArgillaSettings(
                api_url=chaos_stack.argilla_url,
                api_key=chaos_stack.argilla_api_key,
                workspace=chaos_stack.argilla_workspace,
            )
            flows_config = load_flows(system.flows_dir)
            seen = await observe(
                system.kafka, argilla, flows_config, system.export_dir, fed.accepted
            )
        finally:
            await system.stop()
    figures = Figures.of(fed, chaos, seen, time.monotonic() - chaos.started, drained)
    figures.notes += [
        f"LLM endpoint: {responder.line()}",
        f"ingest client: {fed.requests} requests, {fed.retries} retried ({dict(fed.answers)})",
        f"export directory: {chaos.read_only_how}; the exporter's health while read-only: "
        f"{'; '.join(chaos.exporter_waiting_on) or 'never waiting'}",
        f"bot annotator restarts: {system.bots.restarts}",
        f"records gone from the broker's topics though they went further: {seen.gaps() or 'none'}",
        f"whole test: {time.monotonic() - started:.0f} s",
    ]
    say(figures.report())
    assert figures.records == size.records
    assert dict(figures.kills) == {t: size.rounds for t in targets if t != "export-dir"}
    assert not figures.lost, figures.report()
    assert not figures.duplicated, figures.report()
    assert not figures.dead_lettered, figures.report()
    assert figures.drained
