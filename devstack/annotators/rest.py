"""The few Argilla 2.8 REST calls bot annotators and annotator accounts need.

Annotators get 403 on the SDK's record listing, so every annotator call here is the one the
UI makes: `POST /api/v1/me/responses/bulk` (upsert this user's responses; each fires the
response webhook like a click in the UI). What an annotator may not read (other users'
responses, the extra metadata holding the Loopline record) the runner reads with the owner's
key from `GET /api/v1/datasets/{id}/records`, which lists from the database: the search
engine's per-user "pending" filter is not relied on (noida-db answers it wrongly).

Connection errors, timeouts and 5xx answers are retried with backoff; any other error raises
`ArgillaError` with the status and Argilla's detail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

API_KEY_HEADER = "X-Argilla-Api-Key"
PAGE = 1000  # Argilla's largest page of records
BULK = 100  # Argilla's largest bulk of responses


class ArgillaError(RuntimeError):
    """Argilla refused a request, or could not be reached after retries."""


@dataclass(frozen=True)
class ListedResponse:
    user_id: str
    status: str  # submitted, discarded, draft


@dataclass(frozen=True)
class ListedRecord:
    """A record as the owner lists it: its status, fields, metadata, everyone's responses and
    the suggestions by question name (values as Argilla stores them)."""

    id: str
    external_id: str
    status: str  # pending, completed
    fields: Mapping[str, Any]
    metadata: Mapping[str, Any]
    responses: tuple[ListedResponse, ...]
    suggestions: Mapping[str, Any]

    def answered_by(self) -> set[str]:
        """Users who submitted or discarded it (a draft is still pending for its user)."""
        return {r.user_id for r in self.responses if r.status in ("submitted", "discarded")}

    def submitted(self) -> int:
        return sum(r.status == "submitted" for r in self.responses)


class ArgillaREST:
    """An Argilla client for one API key (the owner's, or one annotator's); `transport`
    replaces the network (tests)."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            headers={API_KEY_HEADER: api_key},
            timeout=timeout_s,
            transport=transport,
        )
        self._retries = retries
        self._backoff_s = backoff_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer of a request, retrying transient failures."""
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                answer = await self._client.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                if last:
                    raise ArgillaError(f"{method} {path}: Argilla unreachable: {exc!r}") from exc
            else:
                if answer.status_code < 500 or last:
                    break
            await asyncio.sleep(self._backoff_s * 2**attempt)
        if answer.is_error:
            raise ArgillaError(f"{method} {path}: HTTP {answer.status_code}: {_detail(answer)}")
        return answer.json() if answer.content else None

    # -- users and workspaces (owner) ---------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.call("GET", "/api/v1/me")
        return found

    async def user(self, username: str) -> dict[str, Any] | None:
        """The user `username` with their API key (owner only), or None."""
        users = await self.call("GET", "/api/v1/users")
        return next((u for u in users["items"] if u["username"] == username), None)

    async def create_user(self, username: str, password: str, role: str) -> dict[str, Any]:
        body = {"username": username, "password": password, "role": role, "first_name": username}
        created: dict[str, Any] = await self.call("POST", "/api/v1/users", json=body)
        return created

    async def set_password(self, user_id: str, password: str) -> None:
        await self.call("PATCH", f"/api/v1/users/{user_id}", json={"password": password})

    async def workspace(self, name: str) -> dict[str, Any] | None:
        found = await self.call("GET", "/api/v1/me/workspaces")
        return next((w for w in found["items"] if w["name"] == name), None)

    async def create_workspace(self, name: str) -> dict[str, Any]:
        created: dict[str, Any] = await self.call("POST", "/api/v1/workspaces", json={"name": name})
        return created

    async def workspace_users(self, workspace_id: str) -> list[dict[str, Any]]:
        found = await self.call("GET", f"/api/v1/workspaces/{workspace_id}/users")
        users: list[dict[str, Any]] = found["items"]
        return users

    async def add_to_workspace(self, workspace_id: str, user_id: str) -> None:
        path = f"/api/v1/workspaces/{workspace_id}/users"
        await self.call("POST", path, json={"user_id": user_id})

    # -- datasets and records (owner) ---------------------------------------------------------

    async def datasets(self, workspace_id: str) -> list[dict[str, Any]]:
        found = await self.call("GET", "/api/v1/me/datasets", params={"workspace_id": workspace_id})
        items: list[dict[str, Any]] = found["items"]
        return items

    async def questions(self, dataset_id: str) -> list[dict[str, Any]]:
        found = await self.call("GET", f"/api/v1/datasets/{dataset_id}/questions")
        items: list[dict[str, Any]] = found["items"]
        return items

    async def records(
        self, dataset_id: str, question_names: Mapping[str, str]
    ) -> list[ListedRecord]:
        """Every record of the dataset, oldest first, with responses and suggestions
        (`question_names`: question id → name, to name the suggestions)."""
        records: list[ListedRecord] = []
        while True:
            page = await self.call(
                "GET",
                f"/api/v1/datasets/{dataset_id}/records",
                params={"include": "responses,suggestions", "offset": len(records), "limit": PAGE},
            )
            records.extend(_listed(item, question_names) for item in page["items"])
            if not page["items"] or len(records) >= page["total"]:
                return records

    # -- responses (annotator) ----------------------------------------------------------------

    async def upsert_responses(self, items: list[dict[str, Any]]) -> list[str | None]:
        """This user's responses, created or replaced (as the UI's bulk submit); per item
        None, or the error Argilla gave for it."""
        errors: list[str | None] = []
        for start in range(0, len(items), BULK):
            chunk = items[start : start + BULK]
            answer = await self.call("POST", "/api/v1/me/responses/bulk", json={"items": chunk})
            errors.extend((item.get("error") or {}).get("detail") for item in answer["items"])
        return errors


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail", answer.text)
    except ValueError:
        detail = answer.text
    return str(detail)[:500]


def _listed(item: Mapping[str, Any], question_names: Mapping[str, str]) -> ListedRecord:
    suggestions = {
        question_names[s["question_id"]]: s["value"]
        for s in item.get("suggestions") or []
        if s.get("question_id") in question_names
    }
    return ListedRecord(
        id=str(item["id"]),
        external_id=str(item.get("external_id") or item["id"]),
        status=str(item.get("status", "pending")),
        fields=item.get("fields") or {},
        metadata=item.get("metadata") or {},
        responses=tuple(
            ListedResponse(str(r["user_id"]), str(r["status"])) for r in item.get("responses") or []
        ),
        suggestions=suggestions,
    )
