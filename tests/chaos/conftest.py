"""The chaos suite: the real stack on the durable broker, the six services as processes, a flaky
scripted LLM endpoint and bot annotators, attacked while records flow (see test_chaos.py).

Short form (part of `make test`): 300 records. Long form: 2,000 records and three rounds of
attacks, with `--chaos-long` (when tests/chaos is on the command line) or LOOPLINE_CHAOS_LONG=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack as stack
from devstack.config import KafkaMode
from tests.chaos.driver import TARGETS
from tests.chaos.sizes import LONG, SHORT, ChaosSize
from tests.chaos.system import SERVERS, chaos_config

REPO = Path(__file__).resolve().parents[2]
LONG_ENV = "LOOPLINE_CHAOS_LONG"
TARGETS_ENV = "LOOPLINE_CHAOS_TARGETS"  # a comma-separated subset of driver.TARGETS (diagnosis)
# "memory" runs the suite on the in-memory broker (diagnosis: the services' behaviour apart from
# the durable broker's; leave "broker" out of the targets then, memory does not survive it).
KAFKA_MODE_ENV = "LOOPLINE_CHAOS_KAFKA_MODE"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help=f"run the chaos suite's long form (2,000 records; or {LONG_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: the chaos suite (kills services, broker, Argilla)")


def chaos_size(config: pytest.Config) -> ChaosSize:
    wanted = bool(config.getoption("--chaos-long", default=False))
    return LONG if wanted or os.environ.get(LONG_ENV, "") not in ("", "0") else SHORT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    size = chaos_size(config)
    for item in items:
        if "tests/chaos" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(size.test_timeout_s))


@pytest.fixture(scope="package")
def size(request: pytest.FixtureRequest) -> ChaosSize:
    return chaos_size(request.config)


@pytest.fixture(scope="package")
def targets() -> tuple[str, ...]:
    """What the driver attacks: everything, unless LOOPLINE_CHAOS_TARGETS names a subset."""
    wanted = [t.strip() for t in os.environ.get(TARGETS_ENV, "").split(",") if t.strip()]
    unknown = set(wanted) - set(TARGETS)
    assert not unknown, f"{TARGETS_ENV}: unknown {sorted(unknown)}; known: {', '.join(TARGETS)}"
    return tuple(t for t in TARGETS if t in wanted) if wanted else TARGETS


@pytest.fixture(scope="package")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.StackConfig]:
    """Tansu on its object store, Argilla with its search engine and worker; no LLM servers.
    Started for this package only (stopped, by pid, before any other suite's stack starts)."""
    install_dir = Path(os.environ.get("LOOPLINE_TEST_INSTALL_DIR", REPO / ".loopline" / "install"))
    mode: KafkaMode = "memory" if os.environ.get(KAFKA_MODE_ENV) == "memory" else "durable"
    config = chaos_config(tmp_path_factory.mktemp("chaos-stack"), install_dir, mode)
    try:
        stack.up(config, progress=print, components=SERVERS)
        yield config
    finally:
        stack.down(config)
