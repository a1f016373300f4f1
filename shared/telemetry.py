"""OpenTelemetry tracing for a Loopline process."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.settings import TelemetrySettings


def build_tracer_provider(service: str, settings: TelemetrySettings) -> TracerProvider:
    """A tracer provider named after the service; exports over OTLP/HTTP when configured."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"{settings.service_name_prefix}-{service}"})
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider
