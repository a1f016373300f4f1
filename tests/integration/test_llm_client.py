"""The built-in `openai` LLM plugin against the real llama.cpp server of the local stack."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

import devstack as stack
from shared.events import ChatMessage, Role
from shared.llm.base import LLMError
from shared.llm.client import OpenAICompatibleLLM
from shared.plugins import PluginKind, PluginRegistry


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    rationale: str = Field(max_length=200)


def llm_for(config: stack.StackConfig) -> OpenAICompatibleLLM:
    plugin = PluginRegistry().load(PluginKind.llms, "openai")
    client: OpenAICompatibleLLM = plugin(
        base_url=config.llm_base_url, model=config.llm_model_name, params={"temperature": 0}
    )
    return client


async def test_chat_completion_returns_text_with_usage(local_stack: stack.StackConfig) -> None:
    llm = llm_for(local_stack)
    try:
        result = await llm.chat(
            [ChatMessage(role=Role.user, content="Write a Python function that adds two numbers.")],
            max_tokens=64,
        )
    finally:
        await llm.aclose()
    assert result.text.strip()
    assert result.finish_reason in ("stop", "length")
    assert result.usage is not None and result.usage.completion_tokens > 0
    assert result.latency_ms > 0


async def test_json_schema_response_validates(local_stack: stack.StackConfig) -> None:
    schema = Verdict.model_json_schema()
    llm = llm_for(local_stack)
    try:
        result = await llm.chat(
            [
                ChatMessage(role=Role.system, content="You rate answers from 1 to 5."),
                ChatMessage(
                    role=Role.user,
                    content="Question: what is 2+2? Answer: 4. Rate the answer as JSON.",
                ),
            ],
            max_tokens=200,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": schema, "strict": True},
            },
        )
    finally:
        await llm.aclose()
    verdict = Verdict.model_validate(json.loads(result.text))
    assert 1 <= verdict.score <= 5


async def test_prompt_longer_than_the_context_fails_fast(local_stack: stack.StackConfig) -> None:
    llm = llm_for(local_stack)
    too_long = "word " * (local_stack.llm_context + 100)
    try:
        with pytest.raises(LLMError) as caught:
            await llm.chat([ChatMessage(role=Role.user, content=too_long)], max_tokens=8)
    finally:
        await llm.aclose()
    assert caught.value.status_code == 400
    assert not caught.value.retryable
    assert "context" in str(caught.value).lower()
