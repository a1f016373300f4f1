"""The spine benchmark's child processes: started in their own session (a process group whose
id is their pid), their CPU read from /proc, stopped by pid (SIGTERM to the group, SIGKILL
after a timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

sys.path.append(str(Path(__file__).resolve().parents[1] / "common"))
from processes import cpu_s as process_cpu_s


class Child:
    """One process of the benchmark: a service, a relay, the LLM endpoint."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path,
        stdout: int | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def cpu_s(self) -> float:
        """CPU seconds so far (user + system); 0 once the process is gone."""
        return process_cpu_s(self.pid)

    def check(self) -> None:
        code = self.exited()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}; see {self.log_path}")

    async def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait, 10)
        self._log.close()


async def stop_all(children: list[Child]) -> None:
    await asyncio.gather(*(child.stop() for child in children))
