"""Processes the chaos suite starts itself: the six services (`python -m cli run NAME`) and the
bot annotators (`python -m cli annotate`), each in its own session (process group), with a pid
file in the stack's run dir and its output in the stack's log dir. Killed with SIGKILL to the
whole group, restarted with the same command; stopped (SIGTERM, then SIGKILL) by pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.process import (
    group_members,
    is_alive,
    read_pid_file,
    spawn,
    stop_groups,
    write_pid_file,
)

HEALTH_TIMEOUT_S = 120.0


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Process:
    """One process the suite owns: how to start it, where it answers `GET` health checks."""

    name: str
    command: list[str]
    env: dict[str, str]
    run_dir: Path
    log_dir: Path
    health_url: str | None = None
    pid: int | None = None
    starts: int = 0
    kills: int = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"chaos-{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"chaos-{self.name}.pid"

    def start(self) -> None:
        self.pid = spawn(self.command, self.log, self.env)
        write_pid_file(self.pid_file, self.pid)
        self.starts += 1

    def alive(self) -> bool:
        return self.pid is not None and is_alive(self.pid)

    def kill9(self) -> None:
        """SIGKILL to the whole process group, then wait until every member is gone."""
        assert self.pid is not None, f"{self.name} was never started"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (is_alive(self.pid) or group_members(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.kills += 1

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (a drain), SIGKILL after `timeout_s`; by the pid file's pid and start time."""
        record = read_pid_file(self.pid_file)
        if record is not None:
            stop_groups([record], timeout_s)
        self.pid_file.unlink(missing_ok=True)
        self.pid = None

    async def healthy(self) -> bool:
        if self.health_url is None:
            return self.alive()
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                answer = await client.get(self.health_url)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
        """Seconds until the health URL answers 200; raises with the log's tail if it died."""
        started = time.monotonic()
        while not await self.healthy():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting:\n{log_tail(self.log)}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"{self.name}: no healthy answer in {timeout_s:.0f} s:\n{log_tail(self.log)}"
                )
            await asyncio.sleep(0.3)
        return time.monotonic() - started


def service_process(
    name: str, env: dict[str, str], health_port: int, run_dir: Path, log_dir: Path
) -> Process:
    command = [sys.executable, "-m", "cli", "run", name, "--health-port", str(health_port)]
    health = f"http://127.0.0.1:{health_port}/healthz"
    return Process(name, command, env, run_dir, log_dir, health_url=health)


def bot_process(flow: str, env: dict[str, str], run_dir: Path, log_dir: Path) -> Process:
    """`loopline annotate` with `agree` bots on one flow, idle for as long as the run lasts."""
    command = [
        *(sys.executable, "-m", "cli", "annotate", "--flow", flow),
        *("--policy", "agree", "--idle-timeout", "86400"),
    ]
    return Process(f"bots-{flow}", command, env, run_dir, log_dir)


class BotSupervisor:
    """Keeps the bot processes running: one that exits (Argilla was down past its retries, the
    way a person's browser would give up) is started again after a pause."""

    def __init__(self, bots: list[Process], pause_s: float = 3.0) -> None:
        self.bots = bots
        self.pause_s = pause_s
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for bot in self.bots:
            bot.start()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.pause_s)
            for bot in self.bots:
                if not bot.alive():
                    bot.start()
                    self.restarts += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for bot in self.bots:
            bot.stop(timeout_s=5)
