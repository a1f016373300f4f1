"""One real local stack per test session: Tansu (memory), Argilla, llama.cpp with the 0.5B model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import stack
from shared.settings import KafkaSettings, RetrySettings, Settings
from shared.stack.testing import config_for_tests

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.StackConfig]:
    """The real servers, started once for the session and stopped by pid at the end."""
    install_dir = Path(os.environ.get("LOOPLINE_TEST_INSTALL_DIR", REPO / ".loopline" / "install"))
    config = config_for_tests(tmp_path_factory.mktemp("stack"), install_dir)
    try:
        stack.up(config, progress=print)
        yield config
    finally:
        stack.down(config)


@pytest.fixture(scope="session")
def settings(local_stack: stack.StackConfig) -> Settings:
    """Service settings pointed at the test stack, with short group timeouts (Tansu quirk)."""
    return Settings(
        flows_file=REPO / "flows.yaml",
        kafka=KafkaSettings(
            bootstrap_servers=local_stack.kafka_bootstrap,
            topic_partitions=2,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        ),
        retry=RetrySettings(max_attempts=2, backoff_initial_s=0.05),
        shutdown_timeout_s=10,
    )
