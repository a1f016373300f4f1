"""Fixtures for the ingester's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.ingester.otlp_export import ENCODINGS


@pytest.fixture(params=ENCODINGS)
def encoding(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each OTLP test that takes `encoding` runs once per wire encoding."""
    yield request.param
