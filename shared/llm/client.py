"""A client for OpenAI-compatible chat-completions endpoints (llama.cpp, vLLM, TGI, OpenAI).

The chat template is the server's. Errors come back as `LLMError` with the server's own message
and whether retrying could help.

What makes it fit for production traffic:

- in-flight requests are bounded per endpoint (base URL), across every client in the process;
- each attempt has a deadline (`timeout_s` for the whole request);
- 429s, 5xx, timeouts, connection errors and garbled 200s are retried with exponential backoff
  and full jitter, honouring `Retry-After`; errors a retry cannot fix fail at once;
- optional request and token rate limits per endpoint and model, shared across clients;
- `stats` counts requests, retries, failures and tokens;
- each request is a GenAI span and counted in Prometheus metrics (`shared.llm.telemetry`).

Options from a flow file: the client's own (`CLIENT_OPTIONS`), the generation parameters in
common use (`GENERATION_PARAMS`), and `params: {...}` for anything else an endpoint takes. Any
other name is refused, so a typo such as `temprature` fails at `loopline check-flows`.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx
from pydantic import SecretStr

from shared.events import ChatMessage, TokenUsage
from shared.llm.base import LLM, ChatCompletion, LLMError
from shared.llm.rate_limit import InFlightLimit, TokenBucket, shared_bucket, shared_semaphore
from shared.llm.responses import error_message, parse_retry_after
from shared.llm.telemetry import Endpoint, LLMTelemetry
from shared.settings import LLMSettings

# A server's Retry-After up to this long is always honoured, even above `backoff_max_s`.
RETRY_AFTER_HONOURED_MAX_S = 120.0

# Options of the client itself.
CLIENT_OPTIONS = frozenset(
    {
        "base_url",
        "model",
        "api_key",
        "api_key_env",
        "timeout_s",
        "max_in_flight",
        "max_retries",
        "backoff_initial_s",
        "backoff_max_s",
        "requests_per_minute",
        "tokens_per_minute",
        "provider",
    }
)
# Generation parameters a flow may give by name (sent with every request): OpenAI's chat
# completion parameters, then the samplers llama.cpp and vLLM add. Others go in `params`.
GENERATION_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "user",
        "top_k",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "repeat_last_n",
        "repetition_penalty",
        "min_tokens",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "stop_token_ids",
        "ignore_eos",
        "chat_template_kwargs",
    }
)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass
class LLMStats:
    """Counters of one client.

    requests: `chat` calls; retries: extra attempts after a retryable error; failures: `chat`
    calls that raised `LLMError`; prompt_tokens / completion_tokens: as the server reported.
    """

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _resolve_api_key(api_key: SecretStr | str | None, api_key_env: str | None) -> SecretStr | None:
    if api_key is not None and api_key_env is not None:
        raise ValueError("give api_key or api_key_env, not both")
    if api_key_env is not None:
        value = os.environ.get(api_key_env)
        if not value:
            raise ValueError(f"api_key_env: the environment variable {api_key_env} is not set")
        return SecretStr(value)
    if isinstance(api_key, str):
        return SecretStr(api_key)
    return api_key


class OpenAICompatibleLLM(LLM):
    """Chat completions against one model of one OpenAI-compatible endpoint.

    `params` and any other keyword argument are generation parameters sent with every request
    (temperature, top_p, max_tokens, seed, stop, ...); `chat(**params)` overrides them per call.
    The in-flight limit is per base URL and the rate limits per base URL and model, shared by
    every client of the running event loop; the first client to use one decides its size (and
    its clock and sleep). The HTTP connection pool is opened by the first request.
    `provider` names who serves the endpoint in spans (`gen_ai.provider.name`); `telemetry`
    where the spans go (default: the process's global tracer provider, no message content).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: SecretStr | str | None = None,
        timeout_s: float = 120.0,
        params: Mapping[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
        *,
        api_key_env: str | None = None,
        max_in_flight: int = 8,
        max_retries: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        provider: str = "openai",
        telemetry: LLMTelemetry | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        **generation_params: Any,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if max_retries < 0:
            raise ValueError(f"max_retries cannot be negative, got {max_retries}")
        if backoff_initial_s < 0 or backoff_max_s < 0:
            raise ValueError("backoff_initial_s and backoff_max_s cannot be negative")
        for name, rate in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if rate is not None and rate <= 0:
                raise ValueError(f"{name} must be positive, got {rate}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.params: dict[str, Any] = {**(params or {}), **generation_params}
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.stats = LLMStats()
        self.endpoint = Endpoint.of(self.base_url, provider)
        if telemetry is not None:
            self.telemetry = telemetry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        key = _resolve_api_key(api_key, api_key_env)
        secret = key.get_secret_value() if key is not None else ""
        self._headers = {"authorization": f"Bearer {secret}"} if secret else {}
        self._client = client
        self._owns_client = client is None
        self._limits_loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: InFlightLimit | None = None
        self._request_bucket: TokenBucket | None = None
        self._token_bucket: TokenBucket | None = None

    @classmethod
    def accepted_options(cls) -> list[str]:
        """The client options, the named generation parameters, and `params`."""
        return sorted(CLIENT_OPTIONS | GENERATION_PARAMS | {"params"})

    @classmethod
    def from_options(  # type: ignore[override]  # the only context an LLM gets is `defaults`
        cls, options: Mapping[str, Any], *, defaults: LLMSettings | None = None
    ) -> Self:
        """A client from a flow's options: client options apart, everything else is `params`.

        A missing (or null) `model` or `timeout_s` takes the default; a missing `base_url` is
        where the settings say the model is served (`LLMSettings.base_url_for`). The default
        key is only sent to the default endpoints: a flow naming another base URL brings its own
        key (`api_key` or `api_key_env`) or none.
        """
        defaults = defaults or LLMSettings()
        client_options = {
            name: value
            for name, value in options.items()
            if name in CLIENT_OPTIONS and value is not None
        }
        generation = {name: value for name, value in options.items() if name not in CLIENT_OPTIONS}
        explicit = generation.pop("params", None) or {}
        if not isinstance(explicit, Mapping):
            raise TypeError(f"params must be a mapping, got {type(explicit).__name__}")
        model = str(client_options.pop("model", defaults.model))
        base_url = str(client_options.pop("base_url", defaults.base_url_for(model)))
        client_options.setdefault("timeout_s", defaults.timeout_s)
        client_options.setdefault("provider", defaults.provider)
        if "api_key" not in client_options and "api_key_env" not in client_options:
            known = {url.rstrip("/") for url in (defaults.base_url, *defaults.endpoints.values())}
            client_options["api_key"] = defaults.api_key if base_url.rstrip("/") in known else None
        return cls(base_url, model, params={**explicit, **generation}, **client_options)

    # -- limits -------------------------------------------------------------------------------

    def _bind_limits(self) -> None:
        loop = asyncio.get_running_loop()
        if self._limits_loop is loop:
            return
        self._in_flight = shared_semaphore(("llm-in-flight", self.base_url), self.max_in_flight)
        self._request_bucket = (
            shared_bucket(
                ("llm-requests", self.base_url, self.model),
                self.requests_per_minute,
                clock=self._clock,
                sleep=self._sleep,
            )
            if self.requests_per_minute is not None
            else None
        )
        self._token_bucket = (
            shared_bucket(
                ("llm-tokens", self.base_url, self.model),
                self.tokens_per_minute,
                clock=self._clock,
                sleep=self._sleep,
            )
            if self.tokens_per_minute is not None
            else None
        )
        self._limits_loop = loop

    @property
    def in_flight_limit(self) -> InFlightLimit:
        """This endpoint's shared in-flight limit (needs a running event loop)."""
        self._bind_limits()
        assert self._in_flight is not None
        return self._in_flight

    @property
    def request_bucket(self) -> TokenBucket | None:
        """The shared requests-per-minute bucket, if limited (needs a running event loop)."""
        self._bind_limits()
        return self._request_bucket

    @property
    def token_bucket(self) -> TokenBucket | None:
        """The shared tokens-per-minute bucket, if limited (needs a running event loop)."""
        self._bind_limits()
        return self._token_bucket

    # -- requests -----------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(max_connections=max(100, self.max_in_flight)),
            )
        return self._client

    @staticmethod
    def estimate_tokens(body: Mapping[str, Any]) -> int:
        """Tokens a request may use: prompt characters / 4 plus the completion budget."""
        chars = 0
        for message in body.get("messages", []):
            content = message.get("content") if isinstance(message, Mapping) else None
            chars += len(content) if isinstance(content, str) else len(str(content or ""))
        budget = body.get("max_tokens", body.get("max_completion_tokens"))
        completion = budget if isinstance(budget, int) and budget > 0 else 0
        return math.ceil(chars / 4) + completion

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
        self._bind_limits()
        self.stats.requests += 1
        estimate = self.estimate_tokens(body)
        attempts = 0
        while True:
            attempts += 1
            try:
                completion = await self._attempt(body, estimate, attempts)
            except LLMError as exc:
                exc.attempts = attempts
                if not exc.retryable:
                    self.stats.failures += 1
                    raise
                if attempts > self.max_retries:
                    self.stats.failures += 1
                    raise LLMError(
                        f"{self.base_url}: gave up after {attempts} attempts; last error: {exc}",
                        exc.status_code,
                        retryable=True,
                        attempts=attempts,
                        retry_after_s=exc.retry_after_s,
                    ) from exc
                self.stats.retries += 1
                await self._sleep(self._retry_wait(attempts, exc.retry_after_s))
                continue
            if completion.usage is not None:
                self.stats.prompt_tokens += completion.usage.prompt_tokens
                self.stats.completion_tokens += completion.usage.completion_tokens
            return completion

    def _retry_wait(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            if retry_after_s <= RETRY_AFTER_HONOURED_MAX_S:
                return retry_after_s
            return min(retry_after_s, self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempt - 1, 60))
        return self._rng.uniform(0.0, ceiling)

    async def _attempt(self, body: dict[str, Any], estimate: int, attempt: int) -> ChatCompletion:
        assert self._in_flight is not None
        async with self._in_flight:
            if self._request_bucket is not None:
                await self._request_bucket.acquire(1)
            if self._token_bucket is not None:
                await self._token_bucket.acquire(estimate)
            # The span starts when the request leaves (the waits for the limits are not the
            # endpoint's latency) and ends once the answer is read.
            with self.telemetry.attempt(
                self.endpoint, body, attempt, attempt <= self.max_retries
            ) as observed:
                completion = await self._request(body)
                observed.succeeded(completion)
        if self._token_bucket is not None and completion.usage is not None:
            difference = completion.usage.total_tokens - estimate
            if difference > 0:
                self._token_bucket.debit(difference)
            elif difference < 0:
                self._token_bucket.credit(-difference)
        return completion

    async def _request(self, body: dict[str, Any]) -> ChatCompletion:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._http().post(
                    f"{self.base_url}/chat/completions", json=body, headers=self._headers
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMError(
                f"{self.base_url}: no complete answer within {self.timeout_s:g} s: {exc!r}",
                error_type="timeout",
            ) from exc
        except httpx.RequestError as exc:
            raise LLMError(
                f"{self.base_url}: request failed: {exc!r}", error_type=type(exc).__name__
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise LLMError(
                f"{self.base_url}: HTTP {response.status_code}: {error_message(response)}",
                status_code=response.status_code,
                retry_after_s=parse_retry_after(response.headers),
            )
        return self._parse(response, latency_ms)

    def _parse(self, response: httpx.Response, latency_ms: float) -> ChatCompletion:
        def garbled(reason: str) -> LLMError:
            return LLMError(
                f"{self.base_url}: HTTP 200 but {reason}: {response.text[:200]!r}",
                status_code=response.status_code,
                retryable=True,
                error_type="malformed_response",
            )

        try:
            data = response.json()
        except ValueError as exc:
            raise garbled("the body is not JSON") from exc
        if not isinstance(data, dict):
            raise garbled("the body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise garbled("no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise garbled("the choice has no message")
        content = message.get("content")
        usage = data.get("usage")
        token_usage: TokenUsage | None = None
        if isinstance(usage, dict):
            try:
                token_usage = TokenUsage(
                    prompt_tokens=usage.get("prompt_tokens") or 0,
                    completion_tokens=usage.get("completion_tokens") or 0,
                )
            except ValueError as exc:
                raise garbled("the usage is invalid") from exc
        model = data.get("model")
        finish_reason = choice.get("finish_reason")
        response_id = data.get("id")
        return ChatCompletion(
            text=content if isinstance(content, str) else "",
            model=model if isinstance(model, str) and model else self.model,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            usage=token_usage,
            latency_ms=latency_ms,
            response_id=response_id if isinstance(response_id, str) and response_id else None,
        )

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
