"""judge: scores responses with the flow's LLM-as-judge rubric.

Reads `records.generated`; for each record with responses, the flow's rubric asks the judge LLM
for a structured verdict (JSON schema), with the responses shuffled and the shuffle undone, as
many times as the flow's `repeats`. Judgments (ratings, rationales, margin, agreement, or a
failure with the raw text) are added to the record, which goes on to the flow's next stage.
Each judgment is a span in the record's trace with a `gen_ai.evaluation.result` event per
response and criterion, the parent of its LLM calls' GenAI spans (`services.judge.evaluation`).
"""

from __future__ import annotations

from services.judge.judging import judge_record
from services.judge.rubrics.base import Rubric
from shared.events import RECORDS_GENERATED, RECORDS_JUDGED, Record
from shared.llm.base import LLM
from shared.llm.build import build_llm
from shared.llm.telemetry import LLMTelemetry
from shared.plugins import PluginKind, PluginRegistry
from shared.service import ServiceContext, ServiceSpec


def register(context: ServiceContext) -> None:
    registry = PluginRegistry()
    judges: dict[str, tuple[Rubric, LLM]] = {}
    telemetry = LLMTelemetry(
        context.tracer_provider, capture_content=context.settings.telemetry.capture_content
    )
    for name, flow in context.flows.flows.items():
        if flow.judge is not None:
            rubric: Rubric = registry.build(
                PluginKind.rubrics, flow.judge.plugin, flow.judge.options
            )
            llm = build_llm(flow.judge.llm, context.settings.llm, registry, telemetry)
            context.on_stop(llm.aclose)
            judges[name] = (rubric, llm)

    async def judge(record: Record, ctx: ServiceContext) -> None:
        flow = ctx.flow(record.flow)
        judgments = []
        if flow.judge is not None and record.responses:
            rubric, llm = judges[record.flow]
            judgments = await judge_record(
                record,
                rubric,
                llm,
                repeats=flow.judge.repeats,
                max_tokens=flow.judge.max_tokens,
                temperature=flow.judge.temperature,
            )
        await ctx.pass_on(record, "judge", judgments=[*record.judgments, *judgments])

    context.consume_concurrently(
        RECORDS_GENERATED,
        Record,
        judge,
        context.settings.max_concurrent_records,
        once_per_record=True,
    )


SERVICE = ServiceSpec(
    name="judge",
    consumes=(RECORDS_GENERATED,),
    produces=(RECORDS_JUDGED,),
    register=register,
    description=__doc__ or "",
)
