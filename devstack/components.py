"""The servers of the local stack: how to start each one (what a server is, and the health
checks they share, are in `devstack.component`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from devstack.component import (
    Component,
    _run_setup,
    data_path,
    http_answers,
    kafka_answers,
    log_path,
    redis_answers,
    redis_set_size,
)
from devstack.config import LLMServer, StackConfig, model_name
from devstack.installer import ARGILLA_REQUIREMENTS, InstallPaths
from devstack.object_store import STORE_KEY, STORE_SECRET, object_store

LLM_SCRIPT = Path(__file__).with_name("llm_server.py")
PHOENIX_SCRIPT = Path(__file__).with_name("phoenix_server.py")


def llm_threads(servers: int) -> int:
    """CPU threads per llama.cpp server: the machine's cores shared between the servers.

    llama.cpp's threads spin while they wait for each other: two servers of two threads each
    on two cores take turns and generate several times slower than one thread each.
    """
    return max(1, (os.cpu_count() or 1) // max(1, servers))


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
    store = object_store(config, paths)
    store_url = store.url
    kafka_env = dict(
        RUST_LOG="warn",
        AWS_ACCESS_KEY_ID=STORE_KEY,
        AWS_SECRET_ACCESS_KEY=STORE_SECRET,
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
