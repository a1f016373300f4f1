"""The six services' specs and the AsyncAPI document generated from them, once per session."""

from __future__ import annotations

from typing import Any

import pytest

from cli.run import SERVICES, load_service
from shared.asyncapi import build_document
from shared.service import ServiceSpec


@pytest.fixture(scope="session")
def specs() -> list[ServiceSpec]:
    return [load_service(name) for name in SERVICES]


@pytest.fixture(scope="session")
def document(specs: list[ServiceSpec]) -> dict[str, Any]:
    return build_document(specs)
