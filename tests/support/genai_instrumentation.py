"""The official OpenAI instrumentation (`opentelemetry-instrumentation-openai-v2`) around a real
`openai` client call, in each of its message-content modes, as an instrumented app runs it.

`instrumented(mode, ...)` instruments `openai` against the given tracer and logger providers
for the duration of a `with` block, with the environment the app would set:

- "SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT", "NO_CONTENT": the current conventions
  (`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`,
  `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=<mode>`): content on the span, or in one
  `gen_ai.client.inference.operation.details` log-record event, or both, or neither;
- "LEGACY_EVENTS": the library's older code path (before the opt-in existed), which puts each
  message in a `gen_ai.{system,user,...}.message` log event and the answer in `gen_ai.choice`.

`record_call(mode, base_url)` runs one chat completion that way with in-memory exporters and
returns what an OTLP exporter would send: the traces and the logs export requests. Trace and
span ids come from a seeded generator, so two modes' recordings share their ids.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.instrumentation.openai_v2.instruments import Instruments
from opentelemetry.instrumentation.openai_v2.patch import async_chat_completions_create_v_old
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from wrapt import wrap_function_wrapper

MODES = ("SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT", "NO_CONTENT", "LEGACY_EVENTS")
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is Kafka?"},
]


def app_environment(mode: str) -> dict[str, str]:
    """The variables an app sets for `mode` (beside where its exporters send)."""
    if mode == "LEGACY_EVENTS":
        return {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    return {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": mode,
    }


class SeededIds(IdGenerator):
    """Trace and span ids from a seeded generator: the same calls, the same ids."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def instrumented(
    mode: str, tracer_provider: TracerProvider, logger_provider: LoggerProvider
) -> Iterator[None]:
    """`openai` instrumented as an app running in `mode` has it, within the block."""
    assert mode in MODES, mode
    meter_provider = MeterProvider()
    with environment(app_environment(mode)):
        if mode == "LEGACY_EVENTS":
            wrap_function_wrapper(
                "openai.resources.chat.completions",
                "AsyncCompletions.create",
                async_chat_completions_create_v_old(
                    tracer_provider.get_tracer("opentelemetry.instrumentation.openai_v2"),
                    logger_provider.get_logger("opentelemetry.instrumentation.openai_v2"),
                    Instruments(
                        meter_provider.get_meter("opentelemetry.instrumentation.openai_v2")
                    ),
                    True,
                ),
            )
            try:
                yield
            finally:
                unwrap(openai.resources.chat.completions.AsyncCompletions, "create")
            return
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            logger_provider=logger_provider,
            meter_provider=meter_provider,
        )
        try:
            yield
        finally:
            instrumentor.uninstrument()


@dataclass
class Recorded:
    """What the app's OTLP exporters would send for one call, and what the call answered."""

    traces: Any  # ExportTraceServiceRequest
    logs: Any  # ExportLogsServiceRequest
    answer: str
    trace_id: str  # hex, of the LLM call's span
    span_id: str


async def chat(base_url: str, model: str, messages: list[dict[str, str]], **params: Any) -> str:
    """One chat completion through the (instrumented) `openai` client."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
        response = await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            **params,
        )
    return response.choices[0].message.content or ""


async def record_call(
    mode: str,
    base_url: str,
    *,
    model: str = "qwen",
    messages: list[dict[str, str]] | None = None,
    seed: int = 7,
    resource: dict[str, Any] | None = None,
    **params: Any,
) -> Recorded:
    """Run one instrumented chat completion against `base_url` and record its export requests."""
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    app = Resource.create({"service.name": "chat-app", **(resource or {})})
    tracer_provider = TracerProvider(resource=app, id_generator=SeededIds(seed))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider(resource=app)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    with instrumented(mode, tracer_provider, logger_provider):
        answer = await chat(base_url, model, messages or CONVERSATION, **params)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    finished = spans.get_finished_spans()
    [call] = [span for span in finished if span.kind == trace.SpanKind.CLIENT]
    context = call.get_span_context()
    assert context is not None
    return Recorded(
        traces=encode_spans(finished),
        logs=encode_logs(logs.get_finished_logs()),
        answer=answer,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
    )
