"""generator: asks the flow's LLMs for candidate responses.

Reads `records.ingested`; for each record, every model the flow names is asked for its number of
generations, all at once. Many records are in flight together (bounded by
LOOPLINE_MAX_CONCURRENT_RECORDS and each endpoint's own in-flight limit), so the endpoints stay
busy. A record whose LLM calls fail after the client's retries goes to `records.ingested.dlq`.

Each candidate is labelled with the model name the endpoint reports having served (an endpoint
may answer any name with the model it runs), or with the name asked for when it reports none,
and with the endpoint's id of the completion. Every LLM request is a GenAI span in the record's
trace, reported through the service's tracer provider (`shared.llm.telemetry`).
"""

from __future__ import annotations

import asyncio

from shared.events import (
    RECORDS_GENERATED,
    RECORDS_INGESTED,
    RECORDS_JUDGED,
    CandidateResponse,
    Record,
)
from shared.flows import Flow, ModelRef
from shared.llm.base import LLM
from shared.llm.build import build_llm
from shared.llm.telemetry import LLMTelemetry
from shared.plugins import PluginRegistry
from shared.service import ServiceContext, ServiceSpec


def calls_for(flow: Flow, record: Record, models: list[tuple[ModelRef, LLM]]) -> list[LLM]:
    """One LLM per generation wanted for this record (none if the flow keeps app answers)."""
    if record.responses and not flow.generate_if_answered:
        return []
    return [llm for ref, llm in models for _ in range(ref.generations)]


def register(context: ServiceContext) -> None:
    registry = PluginRegistry()
    telemetry = LLMTelemetry(
        context.tracer_provider, capture_content=context.settings.telemetry.capture_content
    )
    models = {
        name: [
            (ref, build_llm(ref, context.settings.llm, registry, telemetry))
            for ref in flow.generate
        ]
        for name, flow in context.flows.flows.items()
    }
    for built in models.values():
        for _, llm in built:
            context.on_stop(llm.aclose)

    async def generate(record: Record, ctx: ServiceContext) -> None:
        flow = ctx.flow(record.flow)
        llms = calls_for(flow, record, models[record.flow])
        prompt = record.prompt_messages()
        completions = await asyncio.gather(*(llm.chat(prompt) for llm in llms))
        candidates = [
            CandidateResponse(
                text=completion.text,
                model=completion.model or llm.model,
                source="generator",
                params=dict(llm.params),
                finish_reason=completion.finish_reason,
                usage=completion.usage,
                latency_ms=completion.latency_ms,
                response_id=completion.response_id,
            )
            for llm, completion in zip(llms, completions, strict=True)
        ]
        await ctx.pass_on(record, "generate", responses=[*record.responses, *candidates])

    context.consume_concurrently(
        RECORDS_INGESTED,
        Record,
        generate,
        context.settings.max_concurrent_records,
        once_per_record=True,
    )


SERVICE = ServiceSpec(
    name="generator",
    consumes=(RECORDS_INGESTED,),
    produces=(RECORDS_GENERATED, RECORDS_JUDGED),
    register=register,
    description=__doc__ or "",
)
