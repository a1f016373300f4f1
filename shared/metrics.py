"""Loopline's Prometheus metrics: what FastStream's Prometheus middleware does not count.

Every metric lives in prometheus_client's default registry (`REGISTRY`), FastStream's too
(`broker_middlewares`), so one exposition (`shared.health`, `/metrics` on a service's health
port) shows them all, with the process's own (CPU, memory, open files). Every Loopline metric is
named `loopline_...` and documented in `docs/metrics.md`; the Grafana dashboard
(`deploy/grafana/loopline.json`) is tested to use only names that exist.

FastStream's middleware counts messages received and published per topic, their sizes, the
handlers' durations and exceptions and the messages in process, labelled `service` like ours.
Here: records per flow and stage, dead letters, batch sizes, consumer lag (`shared.consumer_lag`)
and Argilla's publishing (the argilla-publisher).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from shared.dead_letters import H_ERROR_TYPE, H_TOPIC

__all__ = [
    "ARGILLA_PUBLISH_SECONDS",
    "ARGILLA_REQUEST_FAILURES",
    "ARGILLA_REQUEST_SECONDS",
    "BATCH_SIZE",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "RECORDS",
    "broker_middlewares",
    "record_passed",
]

# The stages a record passes, as `loopline_records_total`'s `stage` label says them. A service
# may name the stage it just did (`pass_on(record, "generate")`): it is counted as done.
STAGES = ("ingested", "generated", "judged", "published", "answered", "completed", "exported")
_DONE = {"ingest": "ingested", "generate": "generated", "judge": "judged", "publish": "published"}

RECORDS = Counter(
    "loopline_records",
    "Records that passed a stage (and went on to the next), by flow",
    ["service", "flow", "stage"],
)
DEAD_LETTERS = Counter(
    "loopline_dead_letters",
    "Messages sent to a dead-letter topic, by the topic they came from and the error's type",
    ["service", "topic", "error_type"],
)
BATCH_SIZE = Histogram(
    "loopline_batch_size",
    "Messages in each batch a batch handler consumed",
    ["service", "topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
CONSUMER_LAG = Gauge(
    "loopline_consumer_lag",
    "Messages of a partition not yet committed by the service's consumer group "
    "(end offset minus committed offset), refreshed periodically",
    ["service", "topic", "partition"],
)
CONSUMER_LAG_UPDATED = Gauge(
    "loopline_consumer_lag_updated",
    "Unix time of the last successful refresh of loopline_consumer_lag",
    ["service"],
)
ARGILLA_PUBLISH_SECONDS = Histogram(
    "loopline_argilla_publish_duration_seconds",
    "Time to publish a group of records into one Argilla dataset, retries and the "
    "announcement on records.published included",
    ["flow"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
ARGILLA_REQUEST_SECONDS = Histogram(
    "loopline_argilla_request_duration_seconds",
    "Duration of one request to Argilla's REST API, by operation",
    ["operation"],
)
ARGILLA_REQUEST_FAILURES = Counter(
    "loopline_argilla_request_failures",
    "Requests to Argilla that failed, by operation and HTTP status (`unreachable`: no answer)",
    ["operation", "status"],
)


def record_passed(service: str, flow: str, stage: str, count: int = 1) -> None:
    """Count `count` records of `flow` through `stage` (one of `STAGES`, or the verb of one)."""
    stage = _DONE.get(stage, stage)
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    RECORDS.labels(service=service, flow=flow, stage=stage).inc(count)


class _Scope(BaseMiddleware):
    """Batch sizes of what is consumed, dead letters among what is published."""

    def __init__(self, msg: Any, /, *, context: Any, service: str) -> None:
        super().__init__(msg, context=context)
        self.service = service

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = msg.raw_message
        if isinstance(raw, list | tuple) and raw:
            topic = str(getattr(raw[0], "topic", "") or "unknown")
            BATCH_SIZE.labels(service=self.service, topic=topic).observe(len(raw))
        return await call_next(msg)

    async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
        result = await call_next(cmd)
        headers = getattr(cmd, "headers", None) or {}
        # A dead letter is what carries the dead-letter headers (`shared.dead_letters`), whoever
        # sends it: the retry middleware, a batch handler, the feedback collector.
        if H_ERROR_TYPE in headers:
            DEAD_LETTERS.labels(
                service=self.service,
                topic=str(headers.get(H_TOPIC) or "unknown"),
                error_type=str(headers[H_ERROR_TYPE]),
            ).inc()
        return result


class _LooplineMetrics:
    """The broker middleware factory of `_Scope` (one instance per message or publish)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, msg: Any, /, *, context: Any) -> _Scope:
        return _Scope(msg, context=context, service=self.service)


def broker_middlewares(service: str) -> list[Any]:
    """The metrics middlewares of a service's broker: FastStream's (messages received and
    published per topic, sizes, durations, exceptions, in process) and Loopline's (batch sizes,
    dead letters). Both on the default registry, labelled with the service's name."""
    return [
        KafkaPrometheusMiddleware(
            registry=REGISTRY, app_name="loopline", custom_labels={"service": service}
        ),
        _LooplineMetrics(service),
    ]
