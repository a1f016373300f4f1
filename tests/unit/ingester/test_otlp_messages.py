"""OTLP spans from the real OpenTelemetry SDK turned into a record's messages and response, for
each way instrumentations write a conversation: gen_ai.input/output.messages attributes,
message and choice events, and OpenLLMetry's indexed attributes; each over every encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import Tracer

from shared.events import Record, Role
from tests.unit.ingester.otlp_export import convert, llm_span, only_record

# --------------------------------------------------------------------------------------------
# Input shape 1: gen_ai.input.messages (+ gen_ai.system_instructions), output attribute


def _current_semconv(tracer: Tracer) -> None:
    llm_span(
        tracer,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "qwen2.5-1.5b",
            "gen_ai.response.model": "qwen2.5-1.5b-instruct-q4",
            "gen_ai.request.temperature": 0.7,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.max_tokens": 256,
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.system_instructions": json.dumps(
                [{"type": "text", "content": "Be brief."}, {"type": "text", "content": "Be kind."}]
            ),
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": "What is Kafka?"}]},
                    {"role": "model", "parts": [{"type": "text", "content": "A log."}]},
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": "Say more,"},
                            {"type": "uri", "modality": "image", "uri": "https://x/y.png"},
                            {"type": "text", "content": "please."},
                        ],
                    },
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "reasoning", "content": "thinking..."},
                            {"type": "text", "content": "A distributed commit log."},
                        ],
                        "finish_reason": "stop",
                    }
                ]
            ),
            "loopline.flow": "support",
            "loopline.tags": ["prod", "eu"],
        },
    )


def test_current_semconv_span_becomes_a_full_record(encoding: str) -> None:
    record = only_record(_current_semconv, encoding)

    assert record["flow"] == "support"
    assert record["messages"] == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {"role": "user", "content": "What is Kafka?"},
        {"role": "assistant", "content": "A log."},
        {"role": "user", "content": "Say more,\nplease."},
    ]
    [response] = record["responses"]
    assert response["text"] == "A distributed commit log."
    assert response["model"] == "qwen2.5-1.5b-instruct-q4"  # response model wins
    assert response["source"] == "app"
    assert response["finish_reason"] == "stop"
    assert response["usage"] == {"prompt_tokens": 42, "completion_tokens": 7}
    assert response["latency_ms"] == pytest.approx(1250.0)
    assert response["params"] == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256}
    assert isinstance(response["params"]["max_tokens"], int)
    assert record["tags"] == ["prod", "eu"]
    assert record["created_at"] == "2023-11-14T22:13:20+00:00"

    metadata = record["metadata"]
    assert metadata["source"] == "otlp"
    assert len(metadata["trace_id"]) == 32 and len(metadata["span_id"]) == 16
    assert metadata["span_name"] == "chat qwen"
    assert metadata["service_name"] == "chat-app"
    assert metadata["provider"] == "openai"
    assert metadata["operation"] == "chat"

    validated = Record.model_validate(record)
    assert validated.record_id == record["record_id"]
    assert validated.messages is not None and validated.messages[0].role is Role.system
    assert validated.responses[0].usage is not None
    assert validated.responses[0].usage.total_tokens == 49
    assert validated.created_at.isoformat() == "2023-11-14T22:13:20+00:00"


def test_system_instructions_as_plain_string_and_request_model_fallback(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.request.model": "small-model",
                "gen_ai.system_instructions": "You answer in French.",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Hello"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": "Bonjour"}]}]
                ),
                "gen_ai.response.finish_reasons": ["length"],
                "gen_ai.usage.input_tokens": 5,  # no output tokens: usage is left out
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello"},
    ]
    [response] = record["responses"]
    assert response["model"] == "small-model"
    assert response["finish_reason"] == "length"  # from gen_ai.response.finish_reasons
    assert "usage" not in response
    assert response["params"] == {}
    assert "provider" not in record["metadata"] and "operation" not in record["metadata"]
    assert "tags" not in record


# --------------------------------------------------------------------------------------------
# Input shape 2: message events, output via gen_ai.choice


def test_message_events_and_choice_event(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-x"},
            events=[
                ("gen_ai.system.message", {"content": "You are terse."}),
                ("gen_ai.user.message", {"content": "Hi"}),
                ("gen_ai.assistant.message", {"gen_ai.event.content": '{"content": "Hello."}'}),
                ("gen_ai.tool.message", {"body": json.dumps({"content": "42", "id": "call_1"})}),
                ("gen_ai.user.message", {"gen_ai.event.content": "What did the tool say?"}),
                ("unrelated.event", {"content": "not a message"}),
                (
                    "gen_ai.choice",
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": json.dumps({"role": "assistant", "content": "It said 42."}),
                    },
                ),
            ],
        )

    record = only_record(build, encoding)
    assert record["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": "What did the tool say?"},
    ]
    [response] = record["responses"]
    assert response["text"] == "It said 42."
    assert response["finish_reason"] == "stop"
    assert response["model"] == "gpt-x"
    assert record["metadata"]["provider"] == "openai"  # from gen_ai.system


def test_choice_event_with_plain_content_and_json_body(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {"gen_ai.operation.name": "chat"},
            events=[
                ("gen_ai.user.message", {"content": "one"}),
                ("gen_ai.choice", {"content": "first answer"}),
            ],
            name="plain",
        )
        llm_span(
            tracer,
            {"gen_ai.operation.name": "chat"},
            events=[
                ("gen_ai.user.message", {"content": "two"}),
                (
                    "gen_ai.choice",
                    {
                        "body": json.dumps(
                            {
                                "index": 0,
                                "finish_reason": "tool_calls",
                                "message": {"content": [{"type": "text", "text": "second"}]},
                            }
                        )
                    },
                ),
            ],
            name="body",
        )

    by_name = {r["metadata"]["span_name"]: r for r in convert(build, encoding).records}
    assert by_name["plain"]["responses"][0]["text"] == "first answer"
    assert by_name["plain"]["responses"][0]["finish_reason"] is None
    assert by_name["plain"]["responses"][0]["model"] == "unknown"
    assert by_name["body"]["responses"][0]["text"] == "second"
    assert by_name["body"]["responses"][0]["finish_reason"] == "tool_calls"


# --------------------------------------------------------------------------------------------
# Input shape 3: OpenLLMetry legacy indexed attributes


def test_legacy_indexed_attributes(encoding: str) -> None:
    attributes: dict[str, Any] = {
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-x",
        "gen_ai.usage.prompt_tokens": 11,
        "gen_ai.usage.completion_tokens": 3,
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Done.",
        "gen_ai.completion.0.finish_reason": "end_turn",
    }
    turns = ["system", "user", "assistant", "user", "human", "developer", "user", "user"]
    turns += ["user", "user", "user"]  # 11 turns: index 10 must sort after index 2
    for i, role in enumerate(turns):
        attributes[f"gen_ai.prompt.{i}.role"] = role
        attributes[f"gen_ai.prompt.{i}.content"] = f"turn {i}"
    attributes["gen_ai.prompt.4.content"] = json.dumps(
        [{"type": "text", "text": "look at"}, {"type": "image_url", "image_url": {"url": "x"}}]
    )

    record = only_record(lambda t: llm_span(t, attributes), encoding)
    contents = [m["content"] for m in record["messages"]]
    assert contents == [f"turn {i}" if i != 4 else "look at" for i in range(11)]
    roles = [m["role"] for m in record["messages"]]
    assert roles[:6] == ["system", "user", "assistant", "user", "user", "system"]
    [response] = record["responses"]
    assert response["text"] == "Done."
    assert response["finish_reason"] == "end_turn"
    assert response["usage"] == {"prompt_tokens": 11, "completion_tokens": 3}
    assert record["metadata"]["provider"] == "Anthropic"


def test_unknown_roles_become_user(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "narrator", "parts": [{"type": "text", "content": "Once..."}]}]
                ),
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Once..."}]


# --------------------------------------------------------------------------------------------
# No output, trailing assistant message


def test_no_output_gives_no_responses(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(tracer, {"gen_ai.operation.name": "chat", "gen_ai.prompt.0.content": "Hi"})

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Hi"}]
    assert record["responses"] == []


def test_trailing_assistant_input_message_becomes_the_response(encoding: str) -> None:
    def build(tracer: Tracer) -> None:
        llm_span(
            tracer,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "user", "parts": [{"type": "text", "content": "Q"}]},
                        {"role": "assistant", "parts": [{"type": "text", "content": "A"}]},
                    ]
                ),
            },
        )

    record = only_record(build, encoding)
    assert record["messages"] == [{"role": "user", "content": "Q"}]
    [response] = record["responses"]
    assert (response["text"], response["model"], response["finish_reason"]) == ("A", "m", "stop")
