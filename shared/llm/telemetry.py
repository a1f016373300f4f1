"""LLM calls as OpenTelemetry spans following the GenAI semantic conventions, and metrics.

Each HTTP request to an endpoint (each attempt: a retried call makes several) is one span,
`chat {model}`, kind CLIENT, a child of the current context (the record's span in the
services). It carries `gen_ai.operation.name`, `gen_ai.provider.name`, the request model and
parameters (temperature, max_tokens, top_p, seed, ...), the response model and id, the finish
reasons, the token usage, `server.address` / `server.port`, `loopline.llm.attempt`, and on
failure `error.type` (the HTTP status such as "429", "timeout", "malformed_response", a
connection error's class name, "cancelled"), the exception and the status ERROR, with
`loopline.llm.will_retry` saying whether the client tries again.

One span per attempt rather than one per call with an event per attempt: a trace viewer then
shows each request with its own duration, status and error, the backoff between them as a
gap, and counts tokens and latency per request the endpoint served; a single span would
stretch over the backoff sleeps and hide which request failed how.

The messages sent and received (`gen_ai.input.messages` / `gen_ai.output.messages`, JSON
strings in the conventions' structure, plus OpenInference's `input.value` / `output.value`
that Phoenix shows) are recorded only with `capture_content` (LOOPLINE_TELEMETRY__CAPTURE_CONTENT).

Metrics go to `shared.llm.metrics` (Prometheus, default registry).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from shared.llm import metrics

if TYPE_CHECKING:
    from shared.llm.base import ChatCompletion

TRACER_NAME = "loopline.llm"

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
OUTPUT_TYPE = "gen_ai.output.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
ATTEMPT = "loopline.llm.attempt"
WILL_RETRY = "loopline.llm.will_retry"
# OpenInference (Phoenix): the text shown in the span list.
INPUT_VALUE, INPUT_MIME = "input.value", "input.mime_type"
OUTPUT_VALUE, OUTPUT_MIME = "output.value", "output.mime_type"

# Request parameters (as sent) and the attributes they become.
REQUEST_PARAMETERS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "stop": "gen_ai.request.stop_sequences",
    "n": "gen_ai.request.choice.count",
}


@dataclass(frozen=True)
class LLMTelemetry:
    """Where an LLM's calls are reported: the tracer provider (None: the process's global one,
    looked up when the first span starts) and whether message content is recorded."""

    tracer_provider: TracerProvider | None = None
    capture_content: bool = False

    @cached_property
    def tracer(self) -> Tracer:
        return trace.get_tracer(TRACER_NAME, tracer_provider=self.tracer_provider)

    @contextmanager
    def attempt(
        self, endpoint: Endpoint, body: Mapping[str, Any], attempt: int, retries_left: bool
    ) -> Iterator[ChatAttempt]:
        """One request's span and metrics; report its answer with `ChatAttempt.succeeded`.

        An exception leaving the block fails the span (status ERROR, `error.type`: the
        exception's `error_type` or class name) and is re-raised.
        """
        model = str(body.get("model", ""))
        attributes = request_attributes(endpoint, body)
        attributes[ATTEMPT] = attempt
        if self.capture_content:
            attributes.update(input_content(body))
        with self.tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = ChatAttempt(span, model, self.capture_content)
            try:
                yield call
            except BaseException as exc:
                call.failed(exc, retries_left)
                raise


@dataclass(frozen=True)
class Endpoint:
    """Who serves a client's requests, as its spans name it."""

    provider: str
    address: str
    port: int

    @classmethod
    def of(cls, base_url: str, provider: str = "openai") -> Endpoint:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(provider, parts.hostname or "", port)


class ChatAttempt:
    """The span and timing of one request; the client reports its answer here."""

    def __init__(self, span: Span, model: str, capture_content: bool) -> None:
        self.span = span
        self.model = model
        self.capture_content = capture_content
        self.started = time.perf_counter()

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def succeeded(self, completion: ChatCompletion) -> None:
        span = self.span
        span.set_attribute(RESPONSE_MODEL, completion.model)
        if completion.response_id:
            span.set_attribute(RESPONSE_ID, completion.response_id)
        if completion.finish_reason:
            span.set_attribute(FINISH_REASONS, (completion.finish_reason,))
        if completion.usage is not None:
            span.set_attribute(INPUT_TOKENS, completion.usage.prompt_tokens)
            span.set_attribute(OUTPUT_TOKENS, completion.usage.completion_tokens)
        if self.capture_content:
            span.set_attributes(output_content(completion))
        metrics.record_success(self.model, self.elapsed_s(), completion.usage)

    def failed(self, exc: BaseException, retries_left: bool) -> None:
        error_type = error_type_of(exc)
        span = self.span
        span.set_attribute(ERROR_TYPE, error_type)
        span.set_attribute(WILL_RETRY, retries_left and bool(getattr(exc, "retryable", False)))
        span.set_status(Status(StatusCode.ERROR, str(exc)[:500] or error_type))
        if not isinstance(exc, asyncio.CancelledError):
            span.record_exception(exc)
        metrics.record_failure(self.model, self.elapsed_s(), error_type)


def error_type_of(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    error_type = getattr(exc, "error_type", None)
    return error_type if isinstance(error_type, str) and error_type else type(exc).__name__


def request_attributes(endpoint: Endpoint, body: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        OPERATION_NAME: "chat",
        PROVIDER_NAME: endpoint.provider,
        REQUEST_MODEL: str(body.get("model", "")),
        SERVER_ADDRESS: endpoint.address,
        SERVER_PORT: endpoint.port,
    }
    for name, attribute in REQUEST_PARAMETERS.items():
        value = body.get(name)
        if name == "stop" and isinstance(value, str):
            value = [value]
        if name == "n" and value == 1:
            continue
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | str):
            attributes[attribute] = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            attributes[attribute] = tuple(value)
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        attributes[OUTPUT_TYPE] = "json" if kind in ("json_schema", "json_object") else "text"
    return attributes


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def input_content(body: Mapping[str, Any]) -> dict[str, str]:
    """The messages sent, in the conventions' structure (role and text parts)."""
    sent = [m for m in body.get("messages", []) if isinstance(m, Mapping)]
    messages = [
        {
            "role": str(m.get("role", "user")),
            "parts": [{"type": "text", "content": _text(m.get("content", ""))}],
        }
        for m in sent
    ]
    return {
        INPUT_MESSAGES: json.dumps(messages, ensure_ascii=False),
        INPUT_VALUE: json.dumps(sent, ensure_ascii=False),
        INPUT_MIME: "application/json",
    }


def output_content(completion: ChatCompletion) -> dict[str, str]:
    """The answer received, in the conventions' structure."""
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": completion.text}],
        "finish_reason": completion.finish_reason or "unknown",
    }
    return {
        OUTPUT_MESSAGES: json.dumps([message], ensure_ascii=False),
        OUTPUT_VALUE: completion.text,
        OUTPUT_MIME: "text/plain",
    }
