"""What the services' tracer provider does once rather than per span: hashing its resource
(the OTLP exporter groups every span it sends by it)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from shared.settings import TelemetrySettings
from shared.telemetry import build_tracer_provider


def test_the_resource_is_serialised_for_its_hash_once(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = build_tracer_provider("ingester", TelemetrySettings())
    assert isinstance(provider, TracerProvider)
    plain = Resource(provider.resource.attributes, provider.resource.schema_url)
    calls = []
    hash_of = Resource.__hash__

    def counted(self: Resource) -> int:
        calls.append(self)
        return hash_of(self)

    monkeypatch.setattr(Resource, "__hash__", counted)
    hashes = {hash(provider.resource) for _ in range(100)}
    assert len(calls) == 1
    assert hashes == {hash_of(plain)}  # the same hash and equality as a plain resource
    assert provider.resource == plain
    assert provider.resource.attributes["service.name"] == "loopline-ingester"
