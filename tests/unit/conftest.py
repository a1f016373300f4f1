"""Unit-test fixtures shared by every module."""

import multiprocessing.forkserver
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def stop_fork_server() -> Iterator[None]:
    """An export with workers starts a fork server that lives as long as the process that
    started it: stop it after each test that did (a no-op otherwise)."""
    yield
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
