"""The servers of the local stack: how to start each one and how to tell that it is healthy."""

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

from devstack.config import LLMServer, StackConfig, model_name, object_store_block
from devstack.errors import failure
from devstack.installer import ARGILLA_REQUIREMENTS, InstallPaths

HEALTH_TIMEOUT_S = 2.0
LLM_SCRIPT = Path(__file__).with_name("llm_server.py")
PHOENIX_SCRIPT = Path(__file__).with_name("phoenix_server.py")


def llm_threads(servers: int) -> int:
    """CPU threads per llama.cpp server: the machine's cores shared between the servers.

    llama.cpp's threads spin while they wait for each other: two servers of two threads each
    on two cores take turns and generate several times slower than one thread each.
    """
    return max(1, (os.cpu_count() or 1) // max(1, servers))


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


# The only identity of the object store: Tansu's (the store listens on loopback only).
_STORE_KEY, _STORE_SECRET = "tansu", "tansusecret"


def _object_store(config: StackConfig, paths: InstallPaths) -> Component:
    """SeaweedFS's S3 API over the stack's data dir, under Tansu's object-store engine.

    Chosen over lighter S3 servers because it honours conditional writes (If-Match /
    If-None-Match): Tansu relies on them to hand out each offset once when several producers
    write one partition at once; a server that ignores them loses acknowledged messages.
    """
    host = config.host
    block = object_store_block(config.ports.object_store)
    store_dir = data_path(config, "object-store")
    identities = store_dir / "identities.json"
    url = f"http://{host}:{block['s3.port']}"
    command = [str(paths.seaweedfs), "server", "-ip", host, "-ip.bind", host]
    command += ["-dir", str(store_dir / "volumes"), "-s3", "-s3.config", str(identities)]
    command += [f"-{option}={port}" for option, port in block.items()]
    # Only what Tansu needs: no Iceberg or Lance catalogs, small volumes, a quick stop.
    command += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]
    command += ["-volume.max=0", "-volume.preStopSeconds=0"]

    def prepare() -> None:
        (store_dir / "volumes").mkdir(parents=True, exist_ok=True)
        identity = {
            "name": "tansu",
            "credentials": [{"accessKey": _STORE_KEY, "secretKey": _STORE_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        identities.write_text(json.dumps({"identities": [identity]}))

    return Component(
        "object-store",
        url,
        command,
        {},
        tuple(block.values()),
        lambda: http_answers(url, lambda response: response.status_code == 403),
        prepare=prepare,
        purpose="S3 object store for Kafka (SeaweedFS)",
    )


def _kafka(config: StackConfig, paths: InstallPaths) -> list[Component]:
    host, ports = config.host, config.ports
    listener = f"tcp://{host}:{ports.kafka}"
    broker = [str(paths.tansu), "broker", "--listener-url", listener]
    broker += ["--advertised-listener-url", listener]

    def check() -> bool:
        return kafka_answers(host, ports.kafka)

    if config.kafka_mode == "memory":
        command = [*broker, "--storage-engine", "memory://tansu/"]
        return [
            Component(
                "kafka",
                config.kafka_bootstrap,
                command,
                {"RUST_LOG": "warn"},
                (ports.kafka,),
                check,
                purpose="Kafka broker (Tansu, in memory)",
            )
        ]
    store = _object_store(config, paths)
    store_url = store.url
    kafka_env = dict(
        RUST_LOG="warn",
        AWS_ACCESS_KEY_ID=_STORE_KEY,
        AWS_SECRET_ACCESS_KEY=_STORE_SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT=store_url,
        AWS_ALLOW_HTTP="true",
    )
    kafka = Component(
        "kafka",
        config.kafka_bootstrap,
        [*broker, "--storage-engine", "s3://tansu/"],
        kafka_env,
        (ports.kafka,),
        check,
        after=("object-store",),
        purpose="Kafka broker (Tansu, on the object store)",
    )
    return [store, kafka]


def _argilla(config: StackConfig, paths: InstallPaths) -> list[Component]:
    host, ports = config.host, config.ports
    home = data_path(config, "argilla")
    python = str(paths.argilla_python)
    search_url = f"http://{host}:{ports.search}"
    redis_url = f"redis://{host}:{ports.redis}/0"
    env = dict(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{home}/argilla.db?check_same_thread=False",
        ARGILLA_ELASTICSEARCH=search_url,
        ARGILLA_SEARCH_ENGINE="elasticsearch",
        ARGILLA_REDIS_URL=redis_url,
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    search_dir = data_path(config, "search")
    search = Component(
        "search",
        search_url,
        [
            str(paths.noida_db),
            "start",
            "--data-dir",
            str(search_dir),
            "--host",
            host,
            "--only",
            "elasticsearch,redis",
            "--elasticsearch-port",
            str(ports.search),
            "--redis-port",
            str(ports.redis),
        ],
        {},
        (ports.search, ports.redis),
        lambda: (
            http_answers(search_url, lambda r: r.status_code == 200)
            and redis_answers(host, ports.redis)
        ),
        prepare=lambda: search_dir.mkdir(parents=True, exist_ok=True),
        purpose="Elasticsearch and Redis for Argilla (noida-db)",
    )
    log = log_path(config, "argilla")
    user = [
        "database",
        "users",
        "create",
        "--first-name",
        "Owner",
        "--username",
        config.argilla_username,
        "--role",
        "owner",
        "--password",
        config.argilla_password.get_secret_value(),
        "--api-key",
        config.argilla_api_key.get_secret_value(),
        "--workspace",
        config.argilla_workspace,
    ]

    # Migrating and creating the owner take two interpreter starts (~8 s): done once per
    # database, server version and owner, as recorded by a marker next to the database.
    done = home / ".loopline-setup"
    fingerprint = hashlib.sha256("\n".join([*ARGILLA_REQUIREMENTS, *user]).encode()).hexdigest()

    def prepare_database() -> None:
        if (home / "argilla.db").exists() and done.is_file() and done.read_text() == fingerprint:
            return
        home.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        server = [python, "-m", "argilla_server"]
        _run_setup("argilla", "database migrate", [*server, "database", "migrate"], env, log)
        label = f"database users create --username {config.argilla_username}"
        _run_setup("argilla", label, [*server, *user], env, log)
        done.write_text(fingerprint)

    server = Component(
        "argilla",
        config.argilla_url,
        [python, "-m", "argilla_server", "start", "--host", host, "--port", str(ports.argilla)],
        env,
        (ports.argilla,),
        lambda: http_answers(f"{config.argilla_url}/api/_status", lambda r: r.status_code == 200),
        after=("search",),
        prepare=prepare_database,
        cwd=home,
        purpose="Argilla server",
    )
    worker = Component(
        "argilla-worker",
        redis_url,
        [python, "-m", "argilla_server", "worker", "--num-workers", "1"],
        env,
        (),
        lambda: redis_set_size(host, ports.redis, "rq:workers") > 0,
        after=("search",),
        cwd=home,
        purpose="Argilla background worker (rq)",
    )
    return [search, server, worker]


def _llm(config: StackConfig, paths: InstallPaths, server: LLMServer) -> Component:
    host, port = server.host, server.port
    base = f"http://{host}:{port}"
    name = server.model_name

    def serves_model(response: httpx.Response) -> bool:
        if response.status_code != 200:
            return False
        try:
            models = response.json().get("data", [])
            return any(model.get("id") == name for model in models)
        except (ValueError, AttributeError):
            return False

    weights = "" if model_name(server.weights) == name else f" on the {server.weights} weights"
    return Component(
        server.component,
        server.base_url,
        [
            str(paths.llm_python),
            str(LLM_SCRIPT),
            "--model",
            str(paths.model(server.weights)),
            "--alias",
            name,
            "--host",
            host,
            "--port",
            str(port),
            "--parallel",
            str(config.llm_parallel),
            "--context",
            str(config.llm_context),
            "--threads",
            str(llm_threads(len(config.llm_servers))),
        ],
        {},
        (port,),
        lambda: (
            http_answers(f"{base}/health", lambda r: r.status_code == 200)
            and http_answers(f"{base}/v1/models", serves_model)
        ),
        purpose=f"LLM server (llama.cpp, {name}{weights})",
    )


def phoenix_env(config: StackConfig) -> dict[str, str]:
    """Phoenix's settings: loopback, its own port and data dir; no telemetry, no assistant.

    The agent assistant would enable a server-side shell by default; external resources
    (fonts, docs) would make the UI reach out to the internet.
    """
    return dict(
        PHOENIX_HOST=config.host,
        PHOENIX_PORT=str(config.ports.phoenix),
        PHOENIX_WORKING_DIR=str(data_path(config, "phoenix")),
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        PHOENIX_LOG_MIGRATIONS="false",
        PHOENIX_DISABLE_AGENT_ASSISTANT="true",
        PHOENIX_AGENTS_DISABLE_BASH="true",
    )


def _phoenix(config: StackConfig, paths: InstallPaths) -> Component:
    """Arize Phoenix, the trace viewer the services export to (OTLP/HTTP at `/v1/traces`).

    Started by our launcher, which keeps Phoenix's gRPC receiver (all interfaces) closed.
    """
    url = config.phoenix_url
    return Component(
        "phoenix",
        url,
        [str(paths.phoenix_python), str(PHOENIX_SCRIPT)],
        phoenix_env(config),
        (config.ports.phoenix,),
        lambda: http_answers(f"{url}/healthz", lambda r: r.status_code == 200),
        cwd=data_path(config, "phoenix"),
        purpose="trace viewer (Arize Phoenix)",
    )


def stack_components(config: StackConfig) -> list[Component]:
    """The stack's servers, in start order (a server's `after` ones come before it)."""
    paths = InstallPaths(config.installs)
    search, argilla, worker = _argilla(config, paths)
    llms = [_llm(config, paths, server) for server in config.llm_servers]
    return [*_kafka(config, paths), search, *llms, argilla, worker, _phoenix(config, paths)]


# Which install step provides each server.
INSTALLED_BY = {
    "object-store": "kafka",
    "kafka": "kafka",
    "search": "argilla",
    "argilla": "argilla",
    "argilla-worker": "argilla",
    "llm": "llm",
    "llm-2": "llm",
    "phoenix": "phoenix",
}
