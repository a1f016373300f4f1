"""The built-in `openai` LLM plugin against the real llama.cpp servers of the local stack."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

import devstack as stack
from devstack.services import llm_settings
from shared.events import ChatMessage, Role
from shared.flows import PluginRef
from shared.llm.base import LLMError
from shared.llm.build import build_llm
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


async def test_a_flow_reaches_each_local_model_by_its_name(local_stack: stack.StackConfig) -> None:
    """`model:` alone picks the server (LOOPLINE_LLM__ENDPOINTS); the answer names the model
    that served it, which a wrong route would give away (a server reports its own name)."""
    defaults = llm_settings(local_stack)
    registry = PluginRegistry()
    question = [ChatMessage(role=Role.user, content="Say hello.")]
    for server in local_stack.llm_servers:
        ref = PluginRef(plugin="openai", options={"model": server.model_name, "max_tokens": 8})
        llm = build_llm(ref, defaults, registry)
        try:
            result = await llm.chat(question)
        finally:
            await llm.aclose()
        assert result.model == server.model_name
        assert result.text.strip()
