"""What a server of the local stack is (`Component`), and how to tell that one is healthy."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.config import StackConfig
from devstack.errors import failure

HEALTH_TIMEOUT_S = 2.0

# Environment variables of the caller that would change what a server does or where it reports.
_NOT_INHERITED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
)
_NOT_INHERITED_PREFIXES = ("ARGILLA_", "AWS_", "PHOENIX_")


@dataclass(frozen=True)
class Component:
    """One server process of the stack.

    `after` names the components that must be healthy before this one starts; `prepare` runs
    (blocking) right before the start, e.g. database migrations.
    """

    name: str
    url: str
    command: list[str]
    env: dict[str, str]  # only the server's own variables; the rest is inherited
    ports: tuple[int, ...]
    check: Callable[[], bool]
    after: tuple[str, ...] = ()
    prepare: Callable[[], None] | None = None
    cwd: Path | None = None
    purpose: str = field(default="")

    @property
    def fingerprint(self) -> str:
        """Identifies the command and settings, to tell a server started with other ones."""
        spec = json.dumps([self.command, sorted(self.env.items()), str(self.cwd)])
        return hashlib.sha256(spec.encode()).hexdigest()[:16]


def http_answers(url: str, accept: Callable[[httpx.Response], bool] | None = None) -> bool:
    """True if `url` answers (and the answer is accepted); any error counts as unhealthy."""
    try:
        response = httpx.get(url, timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return accept(response) if accept is not None else True


def _exchange(host: str, port: int, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
    """Send `request`, read until `complete(answer)` or the peer closes."""
    with socket.create_connection((host, port), timeout=HEALTH_TIMEOUT_S) as conn:
        conn.sendall(request)
        answer = b""
        while not complete(answer):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def kafka_answers(host: str, port: int) -> bool:
    """True if a Kafka ApiVersions (v0) request gets a well-formed, error-free answer."""
    client_id = b"loopline-stack"
    correlation = 7
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        answer = _exchange(
            host, port, struct.pack(">i", len(body)) + body, lambda got: len(got) >= 10
        )
    except OSError:
        return False
    if len(answer) < 10:
        return False
    got_correlation, error_code = struct.unpack(">ih", answer[4:10])
    return bool(got_correlation == correlation and error_code == 0)


def _redis(host: str, port: int, *words: str) -> bytes | None:
    """One Redis command; the first line of the reply, or None if Redis does not answer."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        request += f"${len(word.encode())}\r\n{word}\r\n".encode()
    try:
        answer = _exchange(host, port, request, lambda got: b"\r\n" in got)
    except OSError:
        return None
    return answer.split(b"\r\n", 1)[0] if b"\r\n" in answer else None


def redis_answers(host: str, port: int) -> bool:
    return _redis(host, port, "PING") == b"+PONG"


def redis_set_size(host: str, port: int, key: str) -> int:
    """SCARD of `key`, or -1 if Redis does not answer."""
    reply = _redis(host, port, "SCARD", key)
    if reply is None or not reply.startswith(b":"):
        return -1
    return int(reply[1:])


def process_env(own: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (minus what would change a server's behaviour) plus `own`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _NOT_INHERITED and not key.startswith(_NOT_INHERITED_PREFIXES)
    }
    env.update(own)
    return env


def _run_setup(
    name: str, label: str, command: list[str], env: Mapping[str, str], log: Path
) -> None:
    """Run one blocking setup command with output appended to the component log.

    Only `label` is shown (the command line may hold secrets).
    """
    with log.open("ab") as out:
        out.write(f"\n=== setup: {label}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=process_env(env),
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise failure(name, f"`{label}` timed out", log) from exc
    if result.returncode != 0:
        raise failure(name, f"`{label}` exited with {result.returncode}", log)


def log_path(config: StackConfig, name: str) -> Path:
    return config.log_dir / f"{name}.log"


def data_path(config: StackConfig, name: str) -> Path:
    return config.data_dir / name
