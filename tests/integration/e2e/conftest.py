"""The closed loop the end-to-end tests of the shipped flows share: the six services running
in-process against the session's stack, with the repo's `flows/` made faster.

The flows are the shipped ones, changed for speed only: shorter generations, a judge token
limit that still fits its JSON, and no export triggers (each test exports on demand, through
`loopline demo`'s `run_demo`). The services run
for this package only (a fresh consumer group), so the other integration tests never meet them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import devstack as stack
from cli.demo import demo_sample, run_demo
from devstack.annotators.accounts import ensure_split_annotators
from devstack.annotators.rest import ArgillaREST
from devstack.config import model_name
from devstack.stage_watch import FlowProgress
from devstack.testing import free_port
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.exporter.app import SERVICE as EXPORTER
from services.feedback_collector.app import SERVICE as COLLECTOR
from services.generator.app import SERVICE as GENERATOR
from services.ingester.app import SERVICE as INGESTER
from services.judge.app import SERVICE as JUDGE
from shared.flows import Flow, FlowsConfig, PluginRef, load_flows
from shared.settings import ExportSettings, IngestSettings, Settings, TelemetrySettings
from tests.integration.e2e.reading import exported_rows
from tests.integration.e2e.traces import PROJECT
from tests.support.service_helpers import running_service, with_argilla_and_collector

REPO = Path(__file__).resolve().parents[3]
SERVICES = (INGESTER, GENERATOR, JUDGE, PUBLISHER, COLLECTOR, EXPORTER)
GENERATE_TOKENS = 64  # per generation (the shipped flows allow 256-512)
# A judgment of two responses takes about 200-300 tokens of JSON (rationales are at most 400
# characters each); the shipped 600-900 leave room for more responses.
JUDGE_TOKENS = 480
DEMO_TIMEOUT_S = 420.0  # run_demo gives up after this long
PEOPLE_STAGES = ("in Argilla", "answered", "completed")
RESOURCE_ENV = "OTEL_RESOURCE_ATTRIBUTES"


# Code needs room to finish a function, or no response could pass its tests.
GENERATE_TOKENS_BY_FLOW = {"code-eval": 160}
# A flow's judge with no model of its own is the stack's default model: the 0.5B here, the 1.5B
# under `make up`. `default` routes on the judge's margin, which the 0.5B leaves at 0 (it rates
# every response alike), so it is judged here as `make up` judges it.
JUDGE_MODEL_BY_FLOW = {"default": model_name("1.5b")}


def faster(flow: Flow, generate_tokens: int, judge_model: str | None = None) -> Flow:
    """`flow` with shorter generations and judgments and no export triggers (and its judge on
    `judge_model` when given); nothing else changes."""
    generate = [
        ref.model_copy(update={"options": {**ref.options, "max_tokens": generate_tokens}})
        for ref in flow.generate
    ]
    judge = flow.judge and flow.judge.model_copy(update={"max_tokens": JUDGE_TOKENS})
    if judge is not None and judge_model is not None:
        llm = judge.llm or PluginRef(plugin="openai")
        llm = llm.model_copy(update={"options": {**llm.options, "model": judge_model}})
        judge = judge.model_copy(update={"llm": llm})
    export = flow.export.model_copy(update={"every_records": 0, "every_s": 0})
    return flow.model_copy(update={"generate": generate, "judge": judge, "export": export})


def fast_flows(shipped: FlowsConfig) -> FlowsConfig:
    """The shipped flows, each `faster`."""
    return FlowsConfig(
        flows={
            name: faster(
                flow,
                GENERATE_TOKENS_BY_FLOW.get(name, GENERATE_TOKENS),
                JUDGE_MODEL_BY_FLOW.get(name),
            )
            for name, flow in shipped.flows.items()
        }
    )


@dataclass(frozen=True)
class DemoRun:
    """One `run_demo` of a flow's sample: the records it imported and what came out."""

    flow: str
    record_ids: list[str]
    progress: FlowProgress
    exports: dict[str, Path]  # format -> the version run_demo exported


@dataclass(frozen=True)
class Loop:
    settings: Settings
    flows: FlowsConfig
    folder: Path

    async def demo(
        self,
        flow_name: str,
        limit: int,
        policy: str = "agree",
        policy_options: Mapping[str, Any] | None = None,
        annotators: int = 2,
    ) -> DemoRun:
        """`loopline demo FLOW --limit N` with bot annotators, as the command runs it."""
        flow = self.flows.get(flow_name)
        assert flow.sample is not None, f"flow {flow_name} ships no sample"
        sample = demo_sample(Path(flow.sample.path), self.folder / "samples", flow_name, limit)
        record_ids = [json.loads(line)["demo_record_id"] for line in sample.open()]
        started = time.monotonic()
        progress = await run_demo(
            self.settings,
            self.flows,
            flow_name,
            sample,
            False,
            annotators,
            policy,
            DEMO_TIMEOUT_S,
            policy_options,
        )
        print(f"e2e {flow_name}: {len(record_ids)} records in {time.monotonic() - started:.0f} s")
        assert not progress.failed(), progress.failed()
        assert progress.finished() >= set(record_ids), f"not finished in {DEMO_TIMEOUT_S} s"
        # Every record was seen at every stage of the flow (people's only where they went).
        people = set(record_ids) - progress.auto_accepted
        for name, stage in progress.stages.items():
            wanted = people if name in PEOPLE_STAGES else set(record_ids)
            assert stage.records == wanted, (name, stage.records)
        # A format with no rows writes no version (e.g. `dpo` when every pair is a tie).
        exports = {}
        for ref in flow.export.formats:
            versions = (self.export_dir / flow_name / ref.plugin).glob("v*")
            for version in sorted(versions, key=lambda path: int(path.name[1:]))[-1:]:
                exports[ref.plugin] = version
        assert {f: str(p) for f, p in exports.items()} == progress.export_paths
        return DemoRun(flow_name, record_ids, progress, exports)

    def rows(self, run: DemoRun, fmt: str, config: str | None = None) -> list[dict[str, Any]]:
        """The rows of the version `run` exported in `fmt` (none when it wrote no version)."""
        if fmt not in run.exports:
            return []
        return exported_rows(run.exports[fmt], self.folder / "hf", config)

    @property
    def phoenix_url(self) -> str:
        endpoint = self.settings.telemetry.otlp_endpoint
        assert endpoint is not None
        return endpoint

    @property
    def export_dir(self) -> Path:
        assert self.settings.export.dir is not None
        return self.settings.export.dir

    def owner(self) -> ArgillaREST:
        argilla = self.settings.argilla
        return ArgillaREST(argilla.api_url, argilla.api_key_value())


@pytest.fixture(scope="package")
async def loop(
    local_stack: stack.StackConfig, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Loop]:
    """The six services on the session's stack, with the shipped flows made faster."""
    folder = tmp_path_factory.mktemp("e2e")
    run_settings = with_argilla_and_collector(settings, local_stack).model_copy(
        update={
            "export": ExportSettings(dir=folder / "exports", check_interval_s=1),
            "kafka": settings.kafka.model_copy(
                update={"group_prefix": f"e2e-loop-{uuid.uuid4().hex[:6]}"}
            ),
            "ingest": IngestSettings(port=free_port()),
            "stack_dir": folder,
            # Traces to the stack's Phoenix, where `traces.record_trace` reads them.
            "telemetry": TelemetrySettings(otlp_endpoint=local_stack.phoenix_url),
        }
    )
    flows = fast_flows(load_flows(REPO / "flows"))
    loop = Loop(run_settings, flows, folder)
    # The publisher refuses to start while a split flow's annotators do not exist.
    async with loop.owner() as owner:
        await ensure_split_annotators(owner, flows.flows, run_settings.argilla.workspace)
    async with AsyncExitStack() as services:
        # Each service's tracer provider reads its resource (the Phoenix project) as it starts.
        with mock.patch.dict(os.environ, {RESOURCE_ENV: f"openinference.project.name={PROJECT}"}):
            for spec in SERVICES:
                await services.enter_async_context(running_service(spec, run_settings, flows))
        yield loop
