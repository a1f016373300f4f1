"""The system the chaos suite attacks: the real stack on the durable broker (Tansu on an S3
object store), Argilla and its worker, no llama.cpp servers (the LLM endpoint is the suite's
flaky scripted one); the six services and the bot annotators as processes of their own, with
the shipped `generations-to-argilla` and `default` flows exporting often."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

import devstack as stack
from devstack.config import KafkaMode
from devstack.process import group_members, is_alive, read_pid_file
from devstack.services import SERVICE_NAMES, service_env
from devstack.testing import config_for_tests, free_port
from shared.settings import KafkaSettings
from tests.chaos.processes import BotSupervisor, bot_process, service_process

REPO = Path(__file__).resolve().parents[2]
FLOWS = ("generations-to-argilla", "default")
# The stack's servers the suite runs (object-store and search come as their dependencies).
SERVERS = ("kafka", "argilla", "argilla-worker")
ARGILLA = ("argilla", "argilla-worker")
LLM_MODEL = "chaos-model"  # what the flows' unnamed models are asked as
LLM_TIMEOUT_S = 4.0  # the services' LLM timeout: a hang lasts longer
EXPORT_EVERY_RECORDS = 10
EXPORT_EVERY_S = 3.0
# The formats counted per flow (one row per record: a clear winner, margin 2, every time).
COUNTED_FORMATS = {"generations-to-argilla": ("dpo",), "default": ("sft", "dpo")}


def chaos_config(
    state_dir: Path, install_dir: Path, kafka_mode: KafkaMode = "durable"
) -> stack.StackConfig:
    """Free loopback ports like the integration tests' stack, on the durable broker."""
    return config_for_tests(state_dir, install_dir).model_copy(update={"kafka_mode": kafka_mode})


def write_flows(folder: Path) -> Path:
    """Copies of the shipped flows (no sample), exporting every few records or seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FLOWS:
        body: dict[str, Any] = yaml.safe_load((REPO / "flows" / f"{name}.yaml").read_text())
        body.pop("sample", None)
        body["export"] = {
            **body["export"],
            "every_records": EXPORT_EVERY_RECORDS,
            "every_s": EXPORT_EVERY_S,
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return folder


def flow_models() -> set[str]:
    """Every model name the shipped flows ask for by name."""
    names: set[str] = set()
    for name in FLOWS:
        body = yaml.safe_load((REPO / "flows" / f"{name}.yaml").read_text())
        for ref in body.get("generate", []):
            model = (ref.get("options") or {}).get("model")
            if model:
                names.add(model)
    return names


@dataclass
class Ports:
    ingest: int = field(default_factory=free_port)
    feedback: int = field(default_factory=free_port)
    health: dict[str, int] = field(
        default_factory=lambda: {name: free_port() for name in SERVICE_NAMES}
    )


def chaos_env(
    config: stack.StackConfig, flows: Path, llm_url: str, ports: Ports, export_dir: Path
) -> dict[str, str]:
    """The services' (and bots') environment: `service_env` with the flaky LLM everywhere,
    short group timeouts (Tansu), frequent reconciliation and export checks."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    with mock.patch.dict(os.environ, inherited, clear=True):  # none of the caller's settings
        env = service_env(config, flows)
    env.pop("LOOPLINE_TELEMETRY__OTLP_ENDPOINT")  # the chaos stack runs no Phoenix to export to
    env.update(
        {
            "LOOPLINE_LLM__BASE_URL": llm_url,
            "LOOPLINE_LLM__MODEL": LLM_MODEL,
            "LOOPLINE_LLM__ENDPOINTS": json.dumps({m: llm_url for m in flow_models()}),
            "LOOPLINE_LLM__TIMEOUT_S": str(LLM_TIMEOUT_S),
            "LOOPLINE_ARGILLA__WORKSPACE": config.argilla_workspace,
            "LOOPLINE_KAFKA__TOPIC_PARTITIONS": "2",
            "LOOPLINE_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "LOOPLINE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            "LOOPLINE_KAFKA__GROUP_PREFIX": "chaos",
            "LOOPLINE_INGEST__PORT": str(ports.ingest),
            "LOOPLINE_FEEDBACK__PORT": str(ports.feedback),
            "LOOPLINE_FEEDBACK__PUBLIC_URL": f"http://127.0.0.1:{ports.feedback}/argilla/webhooks",
            "LOOPLINE_FEEDBACK__RECONCILE_INTERVAL_S": "10",
            "LOOPLINE_EXPORT__DIR": str(export_dir),
            "LOOPLINE_EXPORT__CHECK_INTERVAL_S": "1",
            "LOOPLINE_SHUTDOWN_TIMEOUT_S": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class ChaosSystem:
    """The stack's servers (started by the fixture), the six services and the bots."""

    def __init__(self, config: stack.StackConfig, folder: Path, llm_url: str) -> None:
        self.config = config
        self.folder = folder
        self.export_dir = folder / "exports"
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.flows_dir = write_flows(folder / "flows")
        self.ports = Ports()
        self.env = chaos_env(config, self.flows_dir, llm_url, self.ports, self.export_dir)
        run, logs = config.run_dir, config.log_dir
        self.services = {
            name: service_process(name, self.env, self.ports.health[name], run, logs)
            for name in SERVICE_NAMES
        }
        self.bots = BotSupervisor([bot_process(flow, self.env, run, logs) for flow in FLOWS])
        self.kafka = KafkaSettings(bootstrap_servers=config.kafka_bootstrap)

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ingest}"

    async def start(self) -> None:
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            await service.wait_healthy()
        self.bots.start()

    async def stop(self) -> None:
        await self.bots.stop()
        for service in self.services.values():
            await asyncio.to_thread(service.stop)

    # -- the stack's servers ------------------------------------------------------------------

    def kill9_server(self, name: str) -> None:
        """SIGKILL to a stack server's process group (pid from its pid file)."""
        record = read_pid_file(self.config.run_dir / f"{name}.pid")
        assert record is not None and record.alive(), f"{name} is not running"
        os.killpg(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (is_alive(record.pid) or group_members(record.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart_servers(self, names: tuple[str, ...]) -> None:
        """`stack up` of these servers: dead ones (stale pid files) start again."""
        stack.up(self.config, progress=print, components=names)

    def logs(self) -> list[Path]:
        return sorted(self.config.log_dir.glob("*.log"))
