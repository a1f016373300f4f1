"""A small client for OpenAI-compatible chat-completions endpoints (llama.cpp, vLLM, TGI, OpenAI).

The chat template is the server's. Errors come back as `LLMError` with the server's own message
and whether retrying could help.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from shared.events import ChatMessage, TokenUsage

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class LLMError(RuntimeError):
    """A chat completion failed."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code in RETRYABLE_STATUS


class ChatCompletion(BaseModel):
    text: str
    model: str
    finish_reason: str | None
    usage: TokenUsage | None
    latency_ms: float


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except ValueError:
        message = None
    return message or response.text[:500] or response.reason_phrase


class OpenAICompatibleLLM:
    """Chat completions against one model of one OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        timeout_s: float = 120.0,
        params: dict[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.params = dict(params or {})
        headers = {"authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._owns_client = client is None

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        response_format: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump(mode="json") for m in messages],
            **self.params,
            **params,
        }
        if response_format is not None:
            body["response_format"] = response_format
        started = time.perf_counter()
        try:
            response = await self._client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(f"{self.base_url}: timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise LLMError(f"{self.base_url}: cannot connect: {exc!r}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise LLMError(
                f"{self.base_url}: HTTP {response.status_code}: {_error_message(response)}",
                status_code=response.status_code,
            )
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage")
        return ChatCompletion(
            text=choice["message"].get("content") or "",
            model=data.get("model", self.model),
            finish_reason=choice.get("finish_reason"),
            usage=TokenUsage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            )
            if usage
            else None,
            latency_ms=latency_ms,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
