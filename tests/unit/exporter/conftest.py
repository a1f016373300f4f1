"""Fixtures of the exporter's unit tests."""

import uuid
from collections.abc import Iterator

import pytest

from tests.unit.exporter.memory_fs import MEMORY


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh export URL on the in-memory filesystem, removed afterwards."""
    root = f"/exports-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}"
    if MEMORY.exists(root):
        MEMORY.rm(root, recursive=True)
