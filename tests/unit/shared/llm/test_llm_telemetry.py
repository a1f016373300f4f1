"""The `openai` LLM client's telemetry against a scripted server: one GenAI span per request
(a child of the caller's span), error spans, content only when enabled, Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY
from pydantic import SecretStr

from devstack.scripted_llm import Behaviour, ScriptedLLM, hang, malformed, reply, status
from shared.events import ChatMessage, Role
from shared.llm.base import LLMError
from shared.llm.client import OpenAICompatibleLLM
from shared.llm.telemetry import LLMTelemetry
from shared.settings import LLMSettings

HELLO = [ChatMessage(role=Role.user, content="hello")]
CONTENT_KEYS = {"gen_ai.input.messages", "gen_ai.output.messages", "input.value", "output.value"}


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def client(
    server: ScriptedLLM, provider: TracerProvider, model: str, **options: Any
) -> OpenAICompatibleLLM:
    capture = options.pop("capture_content", False)
    return OpenAICompatibleLLM(
        server.base_url,
        model,
        telemetry=LLMTelemetry(provider, capture_content=capture),
        sleep=no_sleep,
        **options,
    )


def chat_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_call_is_a_genai_client_span_under_the_callers_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    answer = reply("hi there", prompt_tokens=11, completion_tokens=3, model="served-q4")
    params = {"temperature": 0.2, "max_tokens": 50, "top_p": 0.9, "seed": 7}
    async with (
        ScriptedLLM([answer]) as server,
        client(server, provider, "asked-model", **params) as llm,
    ):
        with provider.get_tracer("test").start_as_current_span("record") as parent:
            await llm.chat(HELLO)
        port = urlsplit(server.base_url).port

    [span] = chat_spans(exporter)
    assert span.name == "chat asked-model"
    assert span.kind == SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.status.status_code == StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "asked-model",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "gen_ai.response.model": "served-q4",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 3,
        "server.address": "127.0.0.1",
        "server.port": port,
        "loopline.llm.attempt": 1,
    }
    assert not CONTENT_KEYS & set(attributes)  # content is off by default


async def test_the_completion_carries_the_response_id(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    async with (
        ScriptedLLM([reply("a"), reply("b")]) as server,
        client(server, provider, "m") as llm,
    ):
        first, second = await llm.chat(HELLO), await llm.chat(HELLO)
    assert (first.response_id, second.response_id) == ("chatcmpl-1", "chatcmpl-2")


async def test_message_content_is_recorded_when_enabled(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    conversation = [
        ChatMessage(role=Role.system, content="Be brief."),
        ChatMessage(role=Role.user, content="Capital of France?"),
    ]
    async with (
        ScriptedLLM([reply("Paris.", finish_reason="length")]) as server,
        client(server, provider, "m", capture_content=True) as llm,
    ):
        await llm.chat(conversation)

    [span] = chat_spans(exporter)
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Paris."}],
            "finish_reason": "length",
        }
    ]
    assert "Capital of France?" in str(attributes["input.value"])
    assert attributes["output.value"] == "Paris."


async def test_each_attempt_is_a_span_and_a_500_fails_its_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    script: list[Behaviour] = [status(500, {"error": {"message": "boom"}}), reply("ok")]
    async with (
        ScriptedLLM(script) as server,
        client(server, provider, "retried-model") as llm,
    ):
        with provider.get_tracer("test").start_as_current_span("record") as parent:
            result = await llm.chat(HELLO)
    assert result.text == "ok"

    failed, succeeded = sorted(chat_spans(exporter), key=lambda s: s.start_time or 0)
    for span in (failed, succeeded):
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
    assert failed.status.status_code == StatusCode.ERROR
    assert "boom" in (failed.status.description or "")
    assert (failed.attributes or {})["error.type"] == "500"
    assert (failed.attributes or {})["loopline.llm.will_retry"] is True
    assert (failed.attributes or {})["loopline.llm.attempt"] == 1
    assert "gen_ai.response.id" not in (failed.attributes or {})
    assert [event.name for event in failed.events] == ["exception"]
    assert succeeded.status.status_code == StatusCode.UNSET
    assert "error.type" not in (succeeded.attributes or {})
    assert (succeeded.attributes or {})["loopline.llm.attempt"] == 2


async def test_a_timeout_fails_the_span_with_error_type_timeout(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with (
        ScriptedLLM([hang(5)]) as server,
        client(server, provider, "slow-model", timeout_s=0.2, max_retries=0) as llm,
    ):
        with pytest.raises(LLMError):
            await llm.chat(HELLO)

    [span] = chat_spans(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "timeout"
    assert (span.attributes or {})["loopline.llm.will_retry"] is False


@pytest.mark.parametrize(
    ("behaviour", "error_type"),
    [(status(429), "429"), (status(400), "400"), (malformed(), "malformed_response")],
)
async def test_error_types_name_the_failure(
    spans: tuple[TracerProvider, InMemorySpanExporter], behaviour: Behaviour, error_type: str
) -> None:
    provider, exporter = spans
    async with (
        ScriptedLLM([behaviour]) as server,
        client(server, provider, "m", max_retries=0) as llm,
    ):
        with pytest.raises(LLMError):
            await llm.chat(HELLO)
    [span] = chat_spans(exporter)
    assert (span.attributes or {})["error.type"] == error_type


async def test_a_refused_connection_names_the_exception(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with ScriptedLLM() as server:
        closed = server.base_url  # nothing listens there once the server stopped
    llm = OpenAICompatibleLLM(closed, "m", max_retries=0, telemetry=LLMTelemetry(provider))
    async with llm:
        with pytest.raises(LLMError):
            await llm.chat(HELLO)
    [span] = chat_spans(exporter)
    assert (span.attributes or {})["error.type"] == "ConnectError"


async def test_the_provider_comes_from_the_settings_or_the_flow(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with ScriptedLLM() as server:
        defaults = LLMSettings(base_url=server.base_url, api_key=SecretStr("k"), provider="vllm")
        for options in ({}, {"provider": "llama.cpp"}):
            llm = OpenAICompatibleLLM.from_options({"model": "m", **options}, defaults=defaults)
            llm.instrument(LLMTelemetry(provider))
            async with llm:
                await llm.chat(HELLO)
    named = [(s.attributes or {})["gen_ai.provider.name"] for s in chat_spans(exporter)]
    assert named == ["vllm", "llama.cpp"]


async def test_metrics_count_requests_tokens_latency_and_errors(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    model = "metered-model"
    before = {
        "ok": sample("loopline_llm_requests_total", model=model, outcome="ok"),
        "503": sample("loopline_llm_requests_total", model=model, outcome="503"),
        "errors": sample("loopline_llm_errors_total", model=model, error_type="503"),
        "input": sample("loopline_llm_tokens_total", model=model, direction="input"),
        "output": sample("loopline_llm_tokens_total", model=model, direction="output"),
        "timed": sample("loopline_llm_request_duration_seconds_count", model=model),
    }
    script: list[Behaviour] = [
        status(503),
        reply("one", prompt_tokens=20, completion_tokens=5),
        reply("two", prompt_tokens=30, completion_tokens=7),
    ]
    async with (
        ScriptedLLM(script) as server,
        client(server, provider, model) as llm,
    ):
        await llm.chat(HELLO)
        await llm.chat(HELLO)

    after = {
        "ok": sample("loopline_llm_requests_total", model=model, outcome="ok"),
        "503": sample("loopline_llm_requests_total", model=model, outcome="503"),
        "errors": sample("loopline_llm_errors_total", model=model, error_type="503"),
        "input": sample("loopline_llm_tokens_total", model=model, direction="input"),
        "output": sample("loopline_llm_tokens_total", model=model, direction="output"),
        "timed": sample("loopline_llm_request_duration_seconds_count", model=model),
    }
    moved = {name: after[name] - before[name] for name in before}
    assert moved == {"ok": 2, "503": 1, "errors": 1, "input": 50, "output": 12, "timed": 3}
