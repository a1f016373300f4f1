"""The shipped flows (`flows/`): each validates with its plugins, and each sample imports
through the ingester's own pipeline with no rejected row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from services.ingester.batch_import import import_rows
from services.ingester.pipeline import IngestPipeline, Message
from services.ingester.sources.mapping import Mapping
from services.ingester.sources.readers import detect_format
from shared.events import Record
from shared.flows import FlowsConfig, check_plugins, load_flows
from shared.plugins import PluginRegistry

FLOWS_DIR = Path(__file__).resolve().parents[3] / "flows"
SHIPPED = (
    "code-eval",
    "default",
    "dolly-curation",
    "generations-to-argilla",
    "preference-cleaning",
    "rm-comparison",
    "sft-demonstrations",
)


class Collected:
    """A publisher that keeps what the pipeline publishes."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []

    async def publish_many(self, messages: Sequence[Message]) -> None:
        self.messages.extend(message[:3] for message in messages)  # the trace context aside


@pytest.fixture(scope="module")
def flows() -> FlowsConfig:
    flows = load_flows(FLOWS_DIR)
    check_plugins(flows, PluginRegistry(), str(FLOWS_DIR))
    return flows


def test_the_use_cases_ship_as_flows_with_a_header_each(flows: FlowsConfig) -> None:
    assert sorted(flows.flows) == sorted(SHIPPED)
    for name in SHIPPED:
        text = (FLOWS_DIR / f"{name}.yaml").read_text()
        assert text.startswith(f"# {name}: "), name  # what the flow is for, first
        assert flows.flows[name].description


@pytest.mark.parametrize("name", SHIPPED)
async def test_each_sample_imports_with_no_rejected_row(flows: FlowsConfig, name: str) -> None:
    sample = flows.flows[name].sample
    assert sample is not None, f"{name} ships no sample"
    path = Path(sample.path)
    published = Collected()
    pipeline = IngestPipeline(flows, published, default_flow=name)

    def mapping_for(columns: list[str]) -> Mapping:
        return Mapping.from_options(sample.preset, list(sample.map), columns)

    summary = await import_rows(path, detect_format(path), name, pipeline, mapping_for)
    assert 20 <= summary.rows <= 50
    assert (summary.rejected, summary.reasons) == (0, [])
    assert summary.ingested + summary.duplicates == summary.rows
    assert summary.duplicates == 0
    records = [Record.model_validate_json(value) for _, _, value in published.messages]
    assert len(records) == summary.rows and all(r.flow == name for r in records)


async def test_samples_carry_what_their_flows_need(flows: FlowsConfig) -> None:
    """Code tasks carry their tests, preference pairs two responses, production traffic the
    app's response, curation rows their category."""
    by_flow: dict[str, list[Record]] = {}
    for name in ("code-eval", "preference-cleaning", "default", "dolly-curation"):
        sample = flows.flows[name].sample
        assert sample is not None
        published = Collected()
        pipeline = IngestPipeline(flows, published, default_flow=name)
        path = Path(sample.path)
        await import_rows(
            path,
            detect_format(path),
            name,
            pipeline,
            lambda columns, s=sample: Mapping.from_options(s.preset, list(s.map), columns),
        )
        by_flow[name] = [Record.model_validate_json(v) for _, _, v in published.messages]
    assert all("assert" in r.metadata["tests"] for r in by_flow["code-eval"])
    assert all(len(r.responses) == 2 for r in by_flow["preference-cleaning"])
    assert all(len(r.responses) == 1 for r in by_flow["default"])
    assert all(r.metadata.get("category") for r in by_flow["dolly-curation"])
