"""The Grafana dashboard (deploy/grafana/loopline.json) uses only metrics that exist: every
metric name its PromQL expressions select is one a Loopline process exposes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.support.metrics import (
    DASHBOARD,
    load_every_metric,
    promql_metric_names,
    registered,
    sample_names,
)


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def variable_metric(definition: str) -> set[str]:
    """`label_values(metric, label)`: the metric."""
    inner = definition.removeprefix("label_values(").rsplit(",", 1)[0]
    return promql_metric_names(inner)


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le, service) (rate(a_seconds_bucket{service=~"$s",'
        ' x="by (y)"}[$__rate_interval]))) / on (service) group_left (flow) b_total'
        " + time() - max without (le) (c)"
    )
    assert promql_metric_names(expression) == {"a_seconds_bucket", "b_total", "c"}


def test_every_metric_the_dashboard_queries_exists() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    load_every_metric()
    exposed = sample_names(registered())
    used: set[str] = set()
    for expression in expressions(dashboard):
        if expression.startswith("label_values("):
            used |= variable_metric(expression)
        else:
            used |= promql_metric_names(expression)
    assert len(used) >= 15, sorted(used)  # the parser found the panels' metrics
    assert sorted(used - exposed) == []


def test_the_dashboard_covers_what_issue_14_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    text = " ".join(expressions(dashboard))
    for metric in (
        "loopline_records_total",  # throughput per stage
        "loopline_consumer_lag",  # lag per partition
        "loopline_dead_letters_total",
        "faststream_received_processed_messages_duration_seconds_bucket",  # handler latency
        "loopline_llm_requests_total",
        "loopline_llm_tokens_total",
        "loopline_llm_request_duration_seconds_bucket",
        "loopline_llm_errors_total",
        "loopline_argilla_publish_duration_seconds_bucket",
        "loopline_argilla_request_failures_total",
    ):
        assert metric in text, metric
    assert "histogram_quantile(0.5," in text and "histogram_quantile(0.99," in text
