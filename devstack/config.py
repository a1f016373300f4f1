"""Configuration of the local stack: where it lives, which ports it uses, which models it serves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

KafkaMode = Literal["durable", "memory"]
ModelSize = Literal["0.5b", "1.5b"]
DEFAULT_INSTALL_DIR = Path(".loopline/install")
# The Phoenix project the services' spans are filed under (resource attribute
# `openinference.project.name`).
PHOENIX_PROJECT = "loopline"
# The local stack's Argilla owner key: well known, so accepted only on loopback
# (shared.deployment_checks); the `loopline` command uses it for an Argilla on loopback when
# LOOPLINE_ARGILLA__API_KEY is not set (cli.options).
LOCAL_ARGILLA_API_KEY = "loopline.owner.apikey"
MODEL_SIZES: tuple[ModelSize, ...] = ("1.5b", "0.5b")


def model_name(size: ModelSize) -> str:
    """The name the local stack serves a model size under, e.g. qwen2.5-coder-1.5b-instruct."""
    return f"qwen2.5-coder-{size}-instruct"


class StackPorts(BaseModel):
    """Loopback ports of the local stack. Every server binds 127.0.0.1 only."""

    model_config = ConfigDict(frozen=True)

    kafka: int = 9092
    # The object store (SeaweedFS) under the durable broker takes a block of
    # OBJECT_STORE_PORTS ports from here: its S3 API on the first (see `object_store_block`).
    object_store: int = 9900
    argilla: int = 6900
    search: int = 9200
    redis: int = 6379
    llm: int = 8080  # the default model (the one LOOPLINE_LLM__* points at)
    llm_2: int = 8081  # the other model
    phoenix: int = 6006  # the trace viewer: its UI, its REST API and OTLP/HTTP at /v1/traces
    services: int = 7100  # health ports of the six services: 7101, 7102, ...


# The object store's parts, each with an HTTP and a gRPC port, in the order of their ports.
_OBJECT_STORE_PARTS = ("s3", "master", "volume", "filer")
OBJECT_STORE_PORTS = 2 * len(_OBJECT_STORE_PARTS)


def object_store_block(first: int) -> dict[str, int]:
    """The object store's ports by its option, from `first` on:
    {"s3.port": first, "s3.port.grpc": first + 1, "master.port": first + 2, ...}."""
    block: dict[str, int] = {}
    for i, part in enumerate(_OBJECT_STORE_PARTS):
        block[f"{part}.port"] = first + 2 * i
        block[f"{part}.port.grpc"] = first + 2 * i + 1
    return block


class LLMServer(BaseModel):
    """One llama.cpp server of the stack: one model name, the weights behind it, its port."""

    model_config = ConfigDict(frozen=True)

    component: str  # "llm" (the default model) or "llm-2"
    model_name: str
    weights: ModelSize
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


class StackConfig(BaseModel):
    """Everything `loopline stack up|down|status` needs to know.

    `state_dir` holds what one running stack owns (pid files, logs, data); `install_dir` holds
    what can be shared between stacks (binaries, virtualenvs, model weights), so a stack with
    another state dir, or a test stack, reuses the downloads of the local default.

    The stack serves both Qwen2.5-Coder models, each under its own name by its own llama.cpp
    server: `model` (component `llm`, port `ports.llm`) is the default one, the other size runs
    as `llm-2` on `ports.llm_2`. `weights` set to a size serves both names with that size's
    weights (tests: two names at the cost of the small model); None gives each name its own.
    """

    model_config = ConfigDict(frozen=True)

    state_dir: Path = Path(".loopline")
    install_dir: Path = DEFAULT_INSTALL_DIR
    kafka_mode: KafkaMode = "durable"
    model: ModelSize = "1.5b"
    weights: ModelSize | None = None
    host: str = "127.0.0.1"
    ports: StackPorts = Field(default_factory=StackPorts)
    argilla_username: str = "owner"
    argilla_password: SecretStr = SecretStr("loopline-owner")
    argilla_api_key: SecretStr = SecretStr(LOCAL_ARGILLA_API_KEY)
    argilla_workspace: str = "admin"
    llm_parallel: int = 4
    llm_context: int = 8192
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 20.0

    @property
    def installs(self) -> Path:
        return self.install_dir.resolve()

    @property
    def run_dir(self) -> Path:
        return (self.state_dir / "run").resolve()

    @property
    def log_dir(self) -> Path:
        return (self.state_dir / "logs").resolve()

    @property
    def data_dir(self) -> Path:
        return (self.state_dir / "data").resolve()

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.ports.kafka}"

    @property
    def argilla_url(self) -> str:
        return f"http://{self.host}:{self.ports.argilla}"

    @property
    def phoenix_url(self) -> str:
        """Phoenix's UI and API; also the OTLP/HTTP endpoint the services export traces to."""
        return f"http://{self.host}:{self.ports.phoenix}"

    @property
    def llm_base_url(self) -> str:
        """The default model's server (LOOPLINE_LLM__BASE_URL)."""
        return self.llm_servers[0].base_url

    @property
    def llm_model_name(self) -> str:
        return model_name(self.model)

    @property
    def llm_servers(self) -> list[LLMServer]:
        """The default model's server first, then the other model's."""
        other = next(size for size in MODEL_SIZES if size != self.model)
        return [
            LLMServer(
                component=component,
                model_name=model_name(size),
                weights=self.weights or size,
                host=self.host,
                port=port,
            )
            for component, size, port in (
                ("llm", self.model, self.ports.llm),
                ("llm-2", other, self.ports.llm_2),
            )
        ]

    @property
    def llm_endpoints(self) -> dict[str, str]:
        """Where each served model name answers: {model name: base URL}."""
        return {server.model_name: server.base_url for server in self.llm_servers}
