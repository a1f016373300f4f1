"""`loopline services up|down|status`: the six services as background processes on the local stack.

Each service runs as `python -m cli run NAME --health-port P`, with a pid file and a log in
the stack's state dir, and settings pointing at the local stack's servers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devstack.config import PHOENIX_PROJECT, StackConfig
from devstack.errors import ComponentStatus, failure
from devstack.process import read_pid_file, spawn, stop_groups, write_pid_file
from shared.settings import LLMSettings

SERVICE_NAMES = (
    "ingester",
    "generator",
    "judge",
    "argilla-publisher",
    "feedback-collector",
    "exporter",
)
HEALTH_TIMEOUT_S = 90.0
OTLP_ENDPOINT = "LOOPLINE_TELEMETRY__OTLP_ENDPOINT"
RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
PROJECT_ATTRIBUTE = "openinference.project.name"


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"service-{name}.pid"


def _log_file(config: StackConfig, name: str) -> Path:
    return config.log_dir / f"service-{name}.log"


def health_url(config: StackConfig, name: str) -> str:
    port = config.ports.services + 1 + SERVICE_NAMES.index(name)
    return f"http://{config.host}:{port}/healthz"


def llm_settings(config: StackConfig) -> LLMSettings:
    """The stack's LLMs as service settings: the default model, and where each model answers.

    A flow that names either model (`model:`) reaches its server through `endpoints`.
    """
    return LLMSettings(
        base_url=config.llm_base_url,
        model=config.llm_model_name,
        endpoints=config.llm_endpoints,
    )


def service_env(config: StackConfig, flows_file: Path) -> dict[str, str]:
    """Environment that points a service at the local stack.

    LOOPLINE_LLM__BASE_URL and LOOPLINE_LLM__MODEL name the default model;
    LOOPLINE_LLM__ENDPOINTS maps every served model name to its server's base URL. The rest
    comes from this process's environment: LOOPLINE_KAFKA__TOPIC_PREFIX and
    LOOPLINE_KAFKA__GROUP_PREFIX, say, put the services in a flow set of their own.

    Traces go to the stack's Phoenix (OTLP/HTTP), filed under the project `loopline`
    (OTEL_RESOURCE_ATTRIBUTES, which the OpenTelemetry SDK merges into every service's
    resource), unless this process's environment names another endpoint or project.
    """
    return {
        **os.environ,
        OTLP_ENDPOINT: os.environ.get(OTLP_ENDPOINT, config.phoenix_url),
        RESOURCE_ATTRIBUTES: _with_project(os.environ.get(RESOURCE_ATTRIBUTES, "")),
        "LOOPLINE_FLOWS_FILE": str(flows_file.resolve()),
        "LOOPLINE_STACK_DIR": str(config.state_dir.resolve()),
        "LOOPLINE_KAFKA__BOOTSTRAP_SERVERS": config.kafka_bootstrap,
        "LOOPLINE_ARGILLA__API_URL": config.argilla_url,
        "LOOPLINE_ARGILLA__API_KEY": config.argilla_api_key.get_secret_value(),
        "LOOPLINE_LLM__BASE_URL": config.llm_base_url,
        "LOOPLINE_LLM__MODEL": config.llm_model_name,
        "LOOPLINE_LLM__ENDPOINTS": json.dumps(config.llm_endpoints),
    }


def _with_project(attributes: str) -> str:
    """OTEL_RESOURCE_ATTRIBUTES (`k=v,k=v`) naming a Phoenix project: the one given, else ours."""
    keys = {item.split("=", 1)[0].strip() for item in attributes.split(",")}
    if PROJECT_ATTRIBUTE in keys:
        return attributes
    ours = f"{PROJECT_ATTRIBUTE}={PHOENIX_PROJECT}"
    return f"{attributes},{ours}" if attributes.strip() else ours


def _healthy(url: str) -> bool:
    try:
        response = httpx.get(url, timeout=3.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def status(config: StackConfig) -> list[ComponentStatus]:
    result = []
    for name in SERVICE_NAMES:
        record = read_pid_file(_pid_file(config, name))
        alive = record is not None and record.alive()
        url = health_url(config, name)
        healthy = alive and _healthy(url)
        detail = "" if healthy else ("not healthy yet" if alive else "not running")
        pid = record.pid if record is not None and alive else None
        result.append(ComponentStatus(name=name, healthy=healthy, url=url, pid=pid, detail=detail))
    return result


def up(
    config: StackConfig, flows_file: Path, progress: Callable[[str], None] = print
) -> list[ComponentStatus]:
    """Start every service that is not running; wait until each reports healthy."""
    env = service_env(config, flows_file)
    for name in SERVICE_NAMES:
        record = read_pid_file(_pid_file(config, name))
        if record is not None and record.alive():
            progress(f"{name}: already running (pid {record.pid})")
            continue
        port = health_url(config, name).rsplit(":", 1)[1].split("/")[0]
        command = [sys.executable, "-m", "cli", "run", name, "--health-port", port]
        pid = spawn(command, _log_file(config, name), env)
        write_pid_file(_pid_file(config, name), pid)
        progress(f"{name}: started (pid {pid})")
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    for name in SERVICE_NAMES:
        record = read_pid_file(_pid_file(config, name))
        while not _healthy(health_url(config, name)):
            if record is None or not record.alive():
                raise failure(name, "exited during startup", _log_file(config, name))
            if time.monotonic() > deadline:
                raise failure(name, "no healthy answer in time", _log_file(config, name))
            time.sleep(0.5)
        progress(f"{name}: healthy at {health_url(config, name)}")
    return status(config)


def down(config: StackConfig) -> list[str]:
    """Stop every service by its pid (SIGTERM lets it drain; SIGKILL after the timeout)."""
    records = {}
    for name in SERVICE_NAMES:
        record = read_pid_file(_pid_file(config, name))
        if record is not None:
            records[name] = record
    stop_groups(records.values(), timeout_s=config.stop_timeout_s)
    for name in records:
        _pid_file(config, name).unlink(missing_ok=True)
    return list(records)
