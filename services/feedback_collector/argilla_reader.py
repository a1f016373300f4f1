"""What the collector reads from Argilla, as its owner: datasets, records with responses, users.

Reads go through Argilla's REST API (async, one `httpx.AsyncClient`); the webhook is
registered through the SDK (`client.webhooks`), which is synchronous and runs in a thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import argilla as rg
import httpx

from services.feedback_collector.mapping import ArgillaDataset, ArgillaRecord

log = logging.getLogger("loopline.feedback_collector")

API_KEY_HEADER = "X-Argilla-Api-Key"
WEBHOOK_EVENTS: tuple[str, ...] = (
    "response.created",
    "response.updated",
    "response.deleted",
    "record.completed",
)
WEBHOOK_DESCRIPTION = "Loopline feedback-collector"


class _RedactSecrets(logging.Filter):
    """The SDK logs a webhook's repr, secret included, at INFO: blank the secret out."""

    pattern = re.compile(r"secret=(['\"])[^'\"]*\1")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "secret=" in message:
            record.msg, record.args = self.pattern.sub("secret='**********'", message), None
        return True


def _redact_sdk_secrets() -> None:
    sdk_log = logging.getLogger("argilla.sdk")
    if not any(isinstance(f, _RedactSecrets) for f in sdk_log.filters):
        sdk_log.addFilter(_RedactSecrets())


class ArgillaUnavailableError(RuntimeError):
    """Argilla could not be reached or answered with a server error: worth retrying later."""


@dataclass(frozen=True)
class RecordsPage:
    items: list[ArgillaRecord]
    total: int | None  # records in the dataset when the page was read


class RecordNotFoundError(LookupError):
    """Argilla has no such record (deleted since the event was sent)."""


class ArgillaReader:
    """Owner-level reads; user names are cached (they never change for an id)."""

    def __init__(self, api_url: str, api_key: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={API_KEY_HEADER: api_key},
            timeout=timeout_s,
        )
        self._usernames: dict[str, str] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ArgillaUnavailableError(f"Argilla GET {path}: {exc!r}") from exc
        if response.status_code >= 500:
            raise ArgillaUnavailableError(f"Argilla GET {path}: HTTP {response.status_code}")
        response.raise_for_status()
        return response.json()

    async def datasets(self) -> list[ArgillaDataset]:
        """Every dataset, with its workspace's name."""
        workspaces = await self._get("/api/v1/me/workspaces")
        names = {str(w["id"]): str(w["name"]) for w in workspaces["items"]}
        listed = await self._get("/api/v1/me/datasets")
        return [
            ArgillaDataset(
                id=str(d["id"]),
                name=d["name"],
                workspace=names.get(str(d["workspace_id"]), str(d["workspace_id"])),
                last_activity_at=d["last_activity_at"],
            )
            for d in listed["items"]
        ]

    async def records(self, dataset_id: str, page_size: int) -> AsyncIterator[RecordsPage]:
        """The dataset's records with all their responses, a page at a time.

        `GET /api/v1/datasets/{id}/records` reads the database (no search-engine window limit on
        deep pages) and lists records in insertion order, like the SDK's own listing. Each page
        says how many records the dataset had when it was read.
        """
        offset = 0
        while True:
            page = await self._get(
                f"/api/v1/datasets/{dataset_id}/records",
                params={"include": "responses", "offset": offset, "limit": page_size},
            )
            items = [ArgillaRecord.model_validate(item) for item in page["items"]]
            total = page.get("total")
            yield RecordsPage(items, total if isinstance(total, int) else None)
            if len(items) < page_size:
                return
            offset += len(items)

    async def record(self, record_id: str) -> ArgillaRecord:
        """One record by its Argilla id, with every response; RecordNotFoundError if gone."""
        path = f"/api/v1/records/{quote(record_id, safe='')}"
        try:
            return ArgillaRecord.model_validate(await self._get(path))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                raise RecordNotFoundError(f"Argilla has no record {record_id}") from exc
            raise

    async def username(self, user_id: str) -> str:
        if user_id not in self._usernames:
            user = await self._get(f"/api/v1/users/{user_id}")
            self._usernames[user_id] = str(user["username"])
        return self._usernames[user_id]

    async def usernames(self, user_ids: Sequence[str]) -> dict[str, str]:
        return {user_id: await self.username(user_id) for user_id in dict.fromkeys(user_ids)}

    def remember_user(self, user_id: str, username: str) -> None:
        """A webhook payload names the user: no need to ask for it later."""
        self._usernames[user_id] = username


@dataclass(frozen=True)
class Registration:
    webhook_id: str
    secrets: tuple[str, ...]
    action: str  # created | reused | updated


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def ensure_webhook(
    api_url: str, api_key: str, url: str, events: Sequence[str] = WEBHOOK_EVENTS
) -> Registration:
    """The collector's webhook, created once: reused (and its events and `enabled` fixed) when
    one exists for `url`. Never creates a second one. Synchronous (SDK): run it in a thread.

    Returns the secrets of every webhook registered for `url`: should an older duplicate exist
    (made by something else), its deliveries verify too.
    """
    _redact_sdk_secrets()
    # No retries of its own (they take seconds per call): the collector's loop backs off.
    client = rg.Argilla(api_url=api_url, api_key=api_key, retries=0)
    try:
        existing = [hook for hook in client.webhooks.list() if _same_url(hook.url, url)]
        wanted = set(events)
        if not existing:
            hook = client.webhooks.add(
                rg.Webhook(
                    url=url, events=list(events), description=WEBHOOK_DESCRIPTION, _client=client
                )
            )
            log.info("registered Argilla webhook %s for %s", hook.id, url)
            return Registration(str(hook.id), (str(hook.secret),), "created")
        if len(existing) > 1:
            log.warning(
                "%d Argilla webhooks post to %s (ids %s); using the first, accepting all secrets",
                len(existing),
                url,
                ", ".join(str(h.id) for h in existing),
            )
        hook = existing[0]
        action = "reused"
        if {str(getattr(e, "value", e)) for e in hook.events} != wanted or not hook.enabled:
            hook.events = list(events)
            hook.enabled = True
            hook = hook.update()
            action = "updated"
            log.info("updated Argilla webhook %s: events %s, enabled", hook.id, ", ".join(events))
        secrets = tuple(str(h.secret) for h in [hook, *existing[1:]] if h.secret)
        return Registration(str(hook.id), secrets, action)
    finally:
        client.http_client.close()
