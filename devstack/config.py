"""Configuration of the local stack: where it lives, which ports it uses, which model it serves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

KafkaMode = Literal["durable", "memory"]
ModelSize = Literal["0.5b", "1.5b"]
DEFAULT_INSTALL_DIR = Path(".loopline/install")


class StackPorts(BaseModel):
    """Loopback ports of the local stack. Every server binds 127.0.0.1 only."""

    model_config = ConfigDict(frozen=True)

    kafka: int = 9092
    object_store: int = 9900
    argilla: int = 6900
    search: int = 9200
    redis: int = 6379
    llm: int = 8080
    services: int = 7100  # health ports of the six services: 7101, 7102, ...


class StackConfig(BaseModel):
    """Everything `loopline stack up|down|status` needs to know.

    `state_dir` holds what one running stack owns (pid files, logs, data); `install_dir` holds
    what can be shared between stacks (binaries, virtualenvs, model weights), so a stack with
    another state dir, or a test stack, reuses the downloads of the local default.
    """

    model_config = ConfigDict(frozen=True)

    state_dir: Path = Path(".loopline")
    install_dir: Path = DEFAULT_INSTALL_DIR
    kafka_mode: KafkaMode = "durable"
    model: ModelSize = "1.5b"
    host: str = "127.0.0.1"
    ports: StackPorts = Field(default_factory=StackPorts)
    argilla_username: str = "owner"
    argilla_password: SecretStr = SecretStr("loopline-owner")
    argilla_api_key: SecretStr = SecretStr("loopline.owner.apikey")
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
    def llm_base_url(self) -> str:
        return f"http://{self.host}:{self.ports.llm}/v1"

    @property
    def llm_model_name(self) -> str:
        return f"qwen2.5-coder-{self.model}-instruct"
