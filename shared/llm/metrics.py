"""Prometheus metrics of LLM requests, on prometheus_client's default registry.

Counted per HTTP request to an endpoint (every attempt, retries included), labelled with the
model asked for (`model`: the names a flow gives, so the label stays low-cardinality):

- `loopline_llm_requests_total{model, outcome}`: `outcome` is `ok` or the error type (the HTTP
  status such as `429` or `500`, `timeout`, `malformed_response`, a connection error's class
  name such as `ConnectError`, `cancelled`);
- `loopline_llm_errors_total{model, error_type}`: the requests that failed, by error type;
- `loopline_llm_tokens_total{model, direction}`: tokens the endpoint reported, `input`
  (prompt) and `output` (completion);
- `loopline_llm_request_duration_seconds{model}`: from sending the request to its answer (or
  failure), waiting for the in-flight and rate limits left out.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.events import TokenUsage

# The GenAI semantic conventions' advice for gen_ai.client.operation.duration, in seconds.
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
    163.84,
)

LLM_REQUESTS = Counter(
    "loopline_llm_requests",
    "LLM requests (each attempt) by model asked for and outcome (ok or the error type)",
    ["model", "outcome"],
)
LLM_ERRORS = Counter(
    "loopline_llm_errors",
    "Failed LLM requests (each attempt) by model asked for and error type",
    ["model", "error_type"],
)
LLM_TOKENS = Counter(
    "loopline_llm_tokens",
    "Tokens the LLM endpoints reported, by model asked for and direction (input, output)",
    ["model", "direction"],
)
LLM_REQUEST_DURATION = Histogram(
    "loopline_llm_request_duration_seconds",
    "Seconds from sending an LLM request to its answer or failure, by model asked for",
    ["model"],
    buckets=DURATION_BUCKETS,
)


def record_success(model: str, seconds: float, usage: TokenUsage | None) -> None:
    LLM_REQUESTS.labels(model=model, outcome="ok").inc()
    LLM_REQUEST_DURATION.labels(model=model).observe(seconds)
    if usage is not None:
        LLM_TOKENS.labels(model=model, direction="input").inc(usage.prompt_tokens)
        LLM_TOKENS.labels(model=model, direction="output").inc(usage.completion_tokens)


def record_failure(model: str, seconds: float, error_type: str) -> None:
    LLM_REQUESTS.labels(model=model, outcome=error_type).inc()
    LLM_ERRORS.labels(model=model, error_type=error_type).inc()
    LLM_REQUEST_DURATION.labels(model=model).observe(seconds)
