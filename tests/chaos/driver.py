"""The chaos driver: records in over the ingester's HTTP API, and, while they flow, each of the
six services killed with SIGKILL and restarted in turn, the export directory read-only for a
while, then the broker, then Argilla with its worker, each killed and restarted."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.services import SERVICE_NAMES
from tests.chaos.readonly import ReadOnlyUnavailable, read_only, writable
from tests.chaos.system import ARGILLA, ChaosSystem

TARGETS = (*SERVICE_NAMES, "export-dir", "broker", "argilla")
RETRY_PAUSE_S = 1.0
KILLED_FOR_S = 1.0  # between a kill and the restart
READ_ONLY_S = 20.0


def payload(run: str, i: int) -> dict[str, Any]:
    """Record `i`: even ones go to `generations-to-argilla`, odd ones to `default` (with the
    app's own answer). Every text differs: the ingester drops records of equal content."""
    record_id = f"chaos-{run}-{i:05d}"
    if i % 2 == 0:
        return {
            "record_id": record_id,
            "flow": "generations-to-argilla",
            "instruction": f"Write a Python function returning the {i}th square number ({run}).",
            "metadata": {"chaos": run, "n": i},
        }
    return {
        "record_id": record_id,
        "flow": "default",
        "instruction": f"How do I reset the password of account {i} ({run})?",
        "responses": [
            {
                "text": f"Open Settings > Account {i} > Reset password.",
                "model": "support-bot-v3",
                "source": "app",
            }
        ],
        "metadata": {"chaos": run, "n": i, "app_model": "support-bot-v3"},
    }


@dataclass
class Feed:
    """What the client saw: records accepted, requests, retries and why."""

    accepted: dict[str, str] = field(default_factory=dict)  # record id -> flow
    requests: int = 0
    retries: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # status code or error type
    done_at: float | None = None


async def feed(
    url: str, records: list[dict[str, Any]], batch: int, every_s: float, out: Feed
) -> None:
    """Every record in batches, one batch every `every_s`; a batch whose answer is not a 200
    (the ingester killed, the broker down) is sent again with its Idempotency-Key until it is."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            key = f"chaos-{uuid.uuid4().hex}"
            while True:
                out.requests += 1
                try:
                    answer = await client.post(
                        "/v1/records", json=chunk, headers={"Idempotency-Key": key}
                    )
                except httpx.HTTPError as exc:
                    out.answers[type(exc).__name__] += 1
                else:
                    out.answers[str(answer.status_code)] += 1
                    if answer.status_code == 200:
                        accepted = answer.json()["accepted"]
                        wanted = [r["record_id"] for r in chunk]
                        assert sorted(accepted) == sorted(wanted), answer.text
                        out.accepted.update({r["record_id"]: r["flow"] for r in chunk})
                        break
                    assert answer.status_code >= 500 or answer.status_code == 429, (
                        f"the ingester refused a good batch: {answer.status_code} {answer.text}"
                    )
                out.retries += 1
                await asyncio.sleep(RETRY_PAUSE_S)
            await asyncio.sleep(every_s)
    out.done_at = time.monotonic()


Say = Callable[[str], None]


@dataclass
class Chaos:
    """What the driver did, when (seconds after it began), and what it saw; `say` shows each
    step as it happens."""

    say: Say = print
    started: float = field(default_factory=time.monotonic)
    kills: Counter[str] = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    read_only_how: str = ""
    exporter_waiting_on: list[str] = field(default_factory=list)  # during the read-only time

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f} s  {what}"
        self.events.append(line)
        self.say(f"chaos: {line}")


async def _restart_service(system: ChaosSystem, name: str, log: Chaos) -> None:
    process = system.services[name]
    await asyncio.to_thread(process.kill9)
    log.kills[name] += 1
    log.note(f"kill -9 {name}")
    await asyncio.sleep(KILLED_FOR_S)
    process.start()
    took = await process.wait_healthy()
    log.note(f"{name} restarted, healthy after {took:.1f} s")


async def _all_healthy(system: ChaosSystem) -> None:
    for process in system.services.values():
        await process.wait_healthy()


async def _restart_servers(
    system: ChaosSystem, names: tuple[str, ...], target: str, log: Chaos
) -> None:
    for name in names:
        await asyncio.to_thread(system.kill9_server, name)
    log.kills[target] += 1
    log.note(f"kill -9 {' and '.join(names)}")
    await asyncio.sleep(KILLED_FOR_S)
    started = time.monotonic()
    await asyncio.to_thread(system.restart_servers, names)
    log.note(f"{target} restarted in {time.monotonic() - started:.1f} s")
    await _all_healthy(system)
    log.note("every service healthy again")


async def _exporter_health(system: ChaosSystem) -> str:
    url = system.services["exporter"].health_url
    assert url is not None
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            body = (await client.get(url)).json()
    except (httpx.HTTPError, ValueError):
        return "no answer"
    return json.dumps(body.get("waiting_on"))


async def _read_only_export(system: ChaosSystem, log: Chaos) -> None:
    try:
        await _export_read_only_for_a_while(system, log)
    except ReadOnlyUnavailable as error:
        log.read_only_how = f"not made read-only, this machine refused: {error}"
        log.note(f"export directory attack not made: {error}")


async def _export_read_only_for_a_while(system: ChaosSystem, log: Chaos) -> None:
    with read_only(system.export_dir) as how:
        log.read_only_how = how
        assert not writable(system.export_dir), "the export directory is still writable"
        log.note(f"export directory read-only ({how}) for {READ_ONLY_S:.0f} s")
        until = time.monotonic() + READ_ONLY_S
        while time.monotonic() < until:
            seen = await _exporter_health(system)
            if seen not in ("null", "{}", "[]", '""'):
                # One line per kind of trouble: without its time so far, and the path.
                seen = re.sub(r" \(retrying for [0-9.]+ s\)|: '[^']*'", "", seen)
                if seen not in log.exporter_waiting_on:
                    log.exporter_waiting_on.append(seen)
            await asyncio.sleep(1)
    assert writable(system.export_dir)
    log.note("export directory writable again")


async def run_chaos(
    system: ChaosSystem, log: Chaos, rounds: int, gap_s: float, targets: tuple[str, ...] = TARGETS
) -> None:
    """Each round: the six services one by one, the export directory read-only for a while,
    the broker, then Argilla (those of them in `targets`); `gap_s` between two attacks."""
    for round_number in range(1, rounds + 1):
        log.note(f"round {round_number} of {rounds}")
        for name in SERVICE_NAMES:
            if name in targets:
                await _restart_service(system, name, log)
                await asyncio.sleep(gap_s)
        if "export-dir" in targets:
            await _read_only_export(system, log)
            await asyncio.sleep(gap_s)
        if "broker" in targets:
            await _restart_servers(system, ("kafka",), "broker", log)
            await asyncio.sleep(gap_s)
        if "argilla" in targets:
            await _restart_servers(system, ARGILLA, "argilla", log)
            await asyncio.sleep(gap_s)
