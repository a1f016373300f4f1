"""Bearer API keys for the ingester's HTTP API, each scoped to flows."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from shared.settings import ApiKey


class KeyRing:
    """The configured keys. With none configured, the API is open."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key; 401 without one, 403 for a key that is not configured."""
        if self.open:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise HTTPException(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "malformed Authorization header: expected 'Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        for key in self.keys:
            if hmac.compare_digest(key.key.get_secret_value().encode(), token.strip().encode()):
                return key
        raise HTTPException(403, "invalid API key")

    @staticmethod
    def authorize(key: ApiKey | None, flows: set[str]) -> None:
        """403 unless `key` may ingest into every one of `flows`."""
        if key is None:
            return
        denied = sorted(flow for flow in flows if not key.allows(flow))
        if denied:
            raise HTTPException(
                403, f"API key {key.name!r} may not ingest into flow(s) {', '.join(denied)}"
            )
