"""The ingester's HTTP app in-process (httpx over ASGI, no network) with a recording publisher."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka.errors import MessageSizeTooLargeError

from services.ingester.api import create_app
from services.ingester.otlp_ingest import OTLPIngest
from services.ingester.pipeline import IngestPipeline, Message
from shared.events import Record
from shared.flows import FlowsConfig, parse_flows
from shared.settings import IngestSettings, KafkaSettings

FLOWS = parse_flows(
    {
        "flows": {
            "default": {"ingest": {"redact": {"plugin": "pii"}}},
            "plain": {},
            "near": {"ingest": {"near_duplicates": {"plugin": "minhash"}}},
        }
    },
    "inline",
)


@dataclass
class RecordingPublisher:
    """Publishes into a list, as the broker would: a message over `max_message_bytes` is
    refused when its turn comes, after the messages before it went out (as aiokafka does)."""

    max_message_bytes: int = KafkaSettings().max_message_bytes
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    calls: int = 0
    fail_next: bool = False

    async def publish_many(self, messages: Sequence[Message]) -> None:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker down")
        for topic, key, value, _ in messages:
            if len(value) + len(key) > self.max_message_bytes:
                raise MessageSizeTooLargeError(f"the message is {len(value)} bytes")
            self.sent.append((topic, key, value))

    def records(self) -> list[Record]:
        """What was published, read back as every downstream service reads it."""
        return [Record.model_validate_json(value) for _, _, value in self.sent]

    def ids(self) -> list[str]:
        return [key for _, key, _ in self.sent]


@dataclass
class Ingester:
    client: httpx.AsyncClient
    publisher: RecordingPublisher
    pipeline: IngestPipeline
    otlp: OTLPIngest

    async def post(self, body: Any, **headers: str) -> httpx.Response:
        """POST /v1/records with `body` as JSON (bytes and str are sent as they are)."""
        content = body if isinstance(body, bytes | str) else json.dumps(body).encode()
        return await self.client.post(
            "/v1/records",
            content=content,
            headers={"content-type": "application/json", **headers},
        )

    async def otlp_export(
        self, path: str, body: bytes, kind: str = "application/x-protobuf", **headers: str
    ) -> httpx.Response:
        """POST an OTLP export body (`/v1/traces` or `/v1/logs`)."""
        return await self.client.post(path, content=body, headers={"content-type": kind, **headers})

    async def stats(self) -> dict[str, int]:
        return dict((await self.client.get("/v1/stats")).json())


async def always_ready() -> bool:
    return True


@asynccontextmanager
async def ingester(
    settings: IngestSettings | None = None,
    flows: FlowsConfig = FLOWS,
    max_message_bytes: int = KafkaSettings().max_message_bytes,
    publisher: RecordingPublisher | None = None,
) -> AsyncIterator[Ingester]:
    """The app as `register` builds it, answering over ASGI (a 500 comes back as a response)."""
    settings = settings or IngestSettings()
    publisher = publisher or RecordingPublisher(max_message_bytes=max_message_bytes)
    pipeline = IngestPipeline(
        flows,
        publisher,
        settings.default_flow,
        max_message_bytes=max_message_bytes,
        max_depth=settings.max_depth,
    )
    app = create_app(pipeline, settings, always_ready)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingester.test") as client:
        yield Ingester(client, publisher, pipeline, app.state.otlp)
    await app.state.otlp.close()


def deep_metadata(levels: int) -> str:
    """A JSON object nested `levels` deep, as text (Python's json cannot write ~900 levels)."""
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


def rejections(response: httpx.Response) -> dict[int, list[dict[str, Any]]]:
    """Per rejected index: its errors (each with `path` and `message`)."""
    return {r["index"]: r["errors"] for r in response.json()["rejected"]}
