"""Helpers for tests of Prometheus metrics: what the registry holds, what PromQL and the metrics
table name, and sample values from the registry or from `/metrics` text."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "docs" / "metrics.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "loopline.json"

# The names a sample of a metric family may have, by the family's type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def load_every_metric() -> None:
    """Import every module of `shared` and `services` and build a service broker, so every
    metric Loopline (and FastStream's middleware) defines is in the default registry."""
    for package_name in ("shared", "services"):
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
    from shared.broker import build_broker
    from shared.settings import Settings

    build_broker(Settings(), "metrics-test")


def registered() -> dict[str, str]:
    """Every metric family in the default registry: its name and type."""
    return {family.name: family.type for family in REGISTRY.collect()}


def sample_names(families: dict[str, str]) -> set[str]:
    """Every sample name the families can expose (a counter `x`: `x_total`, ...)."""
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


# PromQL words that are not metric names (functions are told apart by the "(" after them).
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    # grouping and matching clauses, so an aggregation reads as a function: `sum (...)`
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        if match.group(1).lower() not in _KEYWORDS:
            names.add(match.group(1))
    return names


def documented() -> dict[str, str]:
    """The metrics table rows of `docs/metrics.md`: name -> type."""
    rows = re.findall(r"^\| `([a-z_:]+)` \| (\w+) \|", METRICS_DOC.read_text(), re.M)
    return dict(rows)


def family_name(sample_name: str, kind: str) -> str:
    """The family a documented name belongs to (`x_total` of a counter: `x`)."""
    if kind == "counter" and sample_name.endswith("_total"):
        return sample_name[: -len("_total")]
    return sample_name


def scraped(text: str) -> dict[str, str]:
    """The metric families of `/metrics` text: name -> type."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def value(name: str, **labels: str) -> float:
    """A sample's value in the default registry (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
