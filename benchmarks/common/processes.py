"""What the benchmarks that start processes share: ending a run on SIGTERM so that every
process it started is stopped on the way out, and a process's CPU seconds."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
TICKS = os.sysconf("SC_CLK_TCK")


def stop_on_sigterm() -> None:
    """SIGTERM (a `timeout`, a kill) ends the run like Ctrl-C: every process it started is
    stopped on the way out (the default would leave them running)."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


async def until_sigterm(work: Awaitable[T]) -> T:
    """`work`, cancelled by SIGTERM (its `finally` blocks stop what it started), which then
    ends the program."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    except asyncio.CancelledError:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        stop_on_sigterm()


def cpu_s(pid: int) -> float:
    """The process's CPU seconds so far (user + system); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
