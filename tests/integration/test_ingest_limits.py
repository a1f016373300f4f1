"""The ingester's limits against the real broker: a record too large for a Kafka message is a
per-item 413 and the rest of its batch arrives once (its retry duplicates nothing); an OTLP
export compressed with gzip (the OpenTelemetry Collector's default) arrives."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from devstack.testing import free_port
from services.ingester.app import SERVICE
from shared.events import RECORDS_INGESTED, Record
from shared.flows import FlowsConfig
from shared.settings import IngestSettings, Settings
from tests.support.service_helpers import read_events, running_service


@pytest.fixture(scope="module")
async def limited(
    settings: Settings, ingest_flows: FlowsConfig
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """An open ingester with Kafka's default message limit (1 MiB) and room for larger bodies."""
    kafka = settings.kafka.model_copy(update={"group_prefix": f"limits-{uuid.uuid4().hex[:6]}"})
    ingest = IngestSettings(
        port=free_port(), default_flow="imports", max_body_bytes=4 * 1024 * 1024
    )
    limited_settings = settings.model_copy(update={"kafka": kafka, "ingest": ingest})
    async with running_service(SERVICE, limited_settings, ingest_flows):
        base = f"http://127.0.0.1:{ingest.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            yield client, limited_settings


async def ingested(settings: Settings, wanted: set[str], keep: set[str]) -> list[str]:
    """The ids in `keep` found on `records.ingested`, once every id in `wanted` arrived."""
    found = await read_events(
        settings.kafka,
        RECORDS_INGESTED,
        Record,
        keep=lambda record: record.record_id in keep,
        done=lambda records: wanted <= {record.record_id for record in records},
    )
    return sorted(record.record_id for record in found)


async def test_a_record_over_the_message_limit_is_refused_alone(
    limited: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, settings = limited
    tag = uuid.uuid4().hex[:8]
    small, big, other = f"{tag}-small", f"{tag}-big", f"{tag}-other"
    # 200 KB of control characters: 1.2 MB of JSON escapes, over Kafka's 1 MiB.
    batch = [
        {"record_id": small, "instruction": f"first {tag}"},
        {"record_id": big, "instruction": "\x01" * 200_000},
        {"record_id": other, "instruction": f"second {tag}"},
    ]
    response = await client.post("/v1/records", json=batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == [small, other]
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["status"]) == (1, 413)
    assert "1048576" in rejected["errors"][0]["message"]

    retry = await client.post("/v1/records", json=batch)
    assert retry.json()["duplicates"] == [small, other]

    found = await ingested(settings, {small, other}, {small, big, other})
    assert found == sorted([small, other])  # each once, the big one never


async def test_a_gzip_compressed_otlp_export_arrives(
    limited: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, settings = limited
    tag = uuid.uuid4().hex[:8]
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(name="chat", trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8])
    )
    span.attributes.extend(
        [
            KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
            KeyValue(key="gen_ai.prompt.0.content", value=AnyValue(string_value=f"hi {tag}")),
        ]
    )
    response = await client.post(
        "/v1/traces",
        content=gzip.compress(request.SerializeToString()),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    found = await read_events(
        settings.kafka,
        RECORDS_INGESTED,
        Record,
        keep=lambda record: tag in str(record.instruction) + str(record.messages),
        done=lambda records: len(records) >= 1,
    )
    assert len(found) == 1
