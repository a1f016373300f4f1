"""`loopline demo`'s progress away from a terminal (logs, CI): one line per change, naming a
stalled stage with its last error; and the wait for the exported versions' announcements."""

import asyncio
import io
import time

import pytest
from rich.console import Console

import cli.demo
from cli.demo import progress_line, seen_exported, watch
from devstack.stage_watch import FlowProgress
from shared.flows import parse_flows

FLOWS = parse_flows(
    {"flows": {"f": {"judge": {"plugin": "pairwise"}, "publish": {"plugin": "preference"}}}},
    "test",
)


def progress() -> FlowProgress:
    return FlowProgress("f", FLOWS.get("f"))


def test_one_line_counts_every_stage_and_names_a_stall() -> None:
    seen = progress()
    seen.stages["ingested"].records |= {"a", "b"}
    seen.stages["judged"].records |= {"a"}
    seen.stages["judged"].failed["b"] = "LLMError: no answer"
    seen.stages["in Argilla"].last_change = time.monotonic() - 999
    line = progress_line(seen, 2)
    assert line.startswith("f: ingested 2/2, judged 1/2, in Argilla 0/2, answered 0/2")
    assert "failed 1" in line
    assert "stalled at in Argilla" in line


async def test_watch_prints_a_line_per_change_until_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(cli.demo, "console", Console(file=out, force_terminal=False, width=200))
    seen = progress()

    async def move() -> None:
        for stage in ("ingested", "judged", "in Argilla", "answered", "completed"):
            await asyncio.sleep(0.6)
            seen.stages[stage].records.add("a")
            seen.stages[stage].last_change = time.monotonic()

    await asyncio.gather(watch(seen, seen.flow, 1, timeout_s=30), move())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("f: ingested 0/1")
    assert lines[-1] == ("f: ingested 1/1, judged 1/1, in Argilla 1/1, answered 1/1, completed 1/1")
    assert len(lines) == 6


async def test_seen_exported_waits_for_each_announced_version() -> None:
    seen = progress()
    seen.exported["sft"] = (3, 10)

    async def announce() -> None:
        await asyncio.sleep(0.3)
        seen.exported["dpo"] = (2, 4)

    started = time.monotonic()
    await asyncio.gather(seen_exported(seen, {"sft": 3, "dpo": 2}, wait_s=10), announce())
    assert 0.25 < time.monotonic() - started < 5
    started = time.monotonic()
    await seen_exported(seen, {"kto": 1}, wait_s=0.5)  # never announced: gives up
    assert time.monotonic() - started >= 0.5
