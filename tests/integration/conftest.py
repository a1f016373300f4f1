"""One real local stack per test session: Tansu (memory), Argilla, and two llama.cpp servers
(the 0.5B model as the default, the 1.5B under its own name)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import devstack as stack
from devstack.services import llm_settings
from devstack.testing import config_for_tests, free_port
from services.ingester.app import SERVICE
from shared.flows import FlowsConfig, parse_flows
from shared.settings import ApiKey, IngestSettings, KafkaSettings, RetrySettings, Settings
from tests.support.service_helpers import ADMIN_KEY, SUPPORT_KEY, running_service

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
        flows_file=REPO / "flows",
        llm=llm_settings(local_stack),
        kafka=KafkaSettings(
            bootstrap_servers=local_stack.kafka_bootstrap,
            topic_partitions=2,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        ),
        retry=RetrySettings(max_attempts=2, backoff_initial_s=0.05),
        shutdown_timeout_s=10,
        # The tests run several flow sets on one broker, so each service meets records of flows
        # it does not know; there is no rollout to wait for (test_unknown_flows covers holding).
        unknown_flow_grace_s=0,
    )


INGEST_FLOWS: dict[str, Any] = {
    "flows": {
        "support": {
            "ingest": {"redact": {"plugin": "pii"}},
            "generate": [{"plugin": "openai"}],
        },
        "sampled": {
            "route": {"plugin": "rules", "options": {"sample_rate": 0.5}},
            "generate": [{"plugin": "openai"}],
        },
        "filtered": {
            "route": {
                "plugin": "rules",
                "options": {"require_tags": ["prod"], "cap": {"max_records": 3, "per_s": 3600}},
            },
            "generate": [{"plugin": "openai"}],
        },
        "imports": {"generate": [{"plugin": "openai"}]},
        "near": {
            "ingest": {"near_duplicates": {"plugin": "minhash", "options": {"threshold": 0.8}}},
            "generate": [{"plugin": "openai"}],
        },
    }
}


@pytest.fixture(scope="session")
def ingest_flows() -> FlowsConfig:
    return parse_flows(INGEST_FLOWS, "test flows")


@pytest.fixture(scope="session")
def ingest_settings(settings: Settings) -> Settings:
    ingest = IngestSettings(
        port=free_port(),
        default_flow="support",
        max_batch=50,
        max_body_bytes=64 * 1024,
        api_keys=[
            ApiKey(name="support-app", key=SUPPORT_KEY, flows=["support"]),  # type: ignore[arg-type]
            ApiKey(name="admin", key=ADMIN_KEY, flows=["*"]),  # type: ignore[arg-type]
        ],
    )
    kafka = settings.kafka.model_copy(update={"group_prefix": f"http-{uuid.uuid4().hex[:6]}"})
    return settings.model_copy(update={"ingest": ingest, "kafka": kafka})


@pytest.fixture(scope="session")
async def api(
    ingest_settings: Settings, ingest_flows: FlowsConfig
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_service(SERVICE, ingest_settings, ingest_flows):
        base = f"http://127.0.0.1:{ingest_settings.ingest.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
