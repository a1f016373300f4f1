"""Rows sent through the running ingester's HTTP API, as an app sends its records.

`loopline demo` imports its sample this way when the ingester answers: the records then enter
by the front door (the ingester's checks, routing and spans: the demo's records have traces that
start at the ingester), and directly through the pipeline otherwise.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.ingester.pipeline import IngestResult
from shared.settings import IngestSettings

TIMEOUT_S = 60.0


class IngesterUnavailable(RuntimeError):
    """The ingester did not take a batch (it is down, or answered with a server error)."""


class HttpIngest:
    """`ingest(items)` through `POST /v1/records` of the ingester at `base_url`."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=TIMEOUT_S)

    @classmethod
    def for_flow(cls, settings: IngestSettings, flow: str) -> HttpIngest:
        """The ingester the settings describe, with a key that may ingest into `flow`."""
        key = next((k for k in settings.api_keys if k.allows(flow)), None)
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        return cls(f"http://{host}:{settings.port}", key.key.get_secret_value() if key else None)

    async def ready(self) -> bool:
        """True when the ingester runs and its broker answers."""
        try:
            answer = await self.client.get(f"{self.base_url}/readyz", timeout=5.0)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def ingest(self, items: list[dict[str, Any]]) -> IngestResult:
        try:
            answer = await self.client.post(f"{self.base_url}/v1/records", json=items)
        except httpx.HTTPError as exc:
            raise IngesterUnavailable(f"the ingester at {self.base_url}: {exc!r}") from exc
        if answer.status_code in (200, 413, 422):
            try:
                return IngestResult.model_validate_json(answer.content)
            except ValueError:
                pass  # a 413/422 about the whole request: no per-item answer
        raise IngesterUnavailable(
            f"the ingester at {self.base_url} answered {answer.status_code}: {answer.text[:300]}"
        )

    async def aclose(self) -> None:
        await self.client.aclose()
