"""Judge replicas as real processes: `python -m cli run judge`, one consumer group.

Each replica is a separate process (its own session, so its own process group whose id is
its pid), configured only through `LOOPLINE_*` variables as a deployment would: the run's
broker, topic prefix, partitions and group, the flow file, the scripted endpoint. Each sends
its own API key (`replica-<n>`), so the endpoint can tell whose call it is answering.
Stopped with SIGTERM to its process group, by pid, then SIGKILL if it has not gone in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from devstack.testing import free_port

sys.path.append(str(Path(__file__).resolve().parents[1] / "common"))
from processes import cpu_s as process_cpu_s

REPO = Path(__file__).resolve().parents[2]
RUNNING = "judge: running ("


@dataclass(frozen=True)
class GroupSetup:
    """What every replica of one run shares."""

    bootstrap: str
    topic_prefix: str
    group_prefix: str
    partitions: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    flows_file: Path
    llm_url: str
    work_dir: Path  # the replicas' state dir
    log_dir: Path  # a log file per replica
    extra_env: tuple[tuple[str, str], ...] = ()  # e.g. the judge's concurrency


def api_key(index: int) -> str:
    return f"replica-{index}"


class Replica:
    """One judge process of the group."""

    def __init__(self, setup: GroupSetup, index: int) -> None:
        self.index = index
        self.health_port = free_port()
        self.log_path = setup.log_dir / f"judge-{setup.topic_prefix}{index}.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.time() when launched
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LOOPLINE_", "OTEL_"))},
            "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": setup.bootstrap,
            "LOOPLINE_KAFKA__TOPIC_PREFIX": setup.topic_prefix,
            "LOOPLINE_KAFKA__GROUP_PREFIX": setup.group_prefix,
            "LOOPLINE_KAFKA__TOPIC_PARTITIONS": str(setup.partitions),
            "LOOPLINE_KAFKA__SESSION_TIMEOUT_MS": str(setup.session_timeout_ms),
            "LOOPLINE_KAFKA__HEARTBEAT_INTERVAL_MS": str(setup.heartbeat_interval_ms),
            "LOOPLINE_FLOWS_FILE": str(setup.flows_file),
            "LOOPLINE_LLM__BASE_URL": setup.llm_url,
            "LOOPLINE_LLM__API_KEY": api_key(index),
            "LOOPLINE_STACK_DIR": str(setup.work_dir / "state"),
            "LOOPLINE_HEALTH_PORT": str(self.health_port),
            **dict(setup.extra_env),
        }

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the replica was not started")
        return self.process.pid

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "judge"],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def exited(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def cpu_s(self) -> float:
        """The process's CPU seconds so far (user + system; 0 once it is gone)."""
        return process_cpu_s(self.pid)

    def running(self) -> bool:
        """Whether its log says it runs: topics checked, its consumer in the group with
        partitions assigned (`shared.service.run_service` logs `judge: running` then)."""
        try:
            return RUNNING in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    async def health(self) -> dict[str, Any] | None:
        """Its `/healthz` body, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(url)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = json.loads(answer.content)
        return body

    async def stop(self, timeout_s: float = 30.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait, 10)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.asynccontextmanager
async def stopped_at_exit(replicas: list[Replica]) -> Any:
    """Every replica in `replicas` (the list may grow meanwhile) is stopped on the way out."""
    try:
        yield replicas
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
