"""The LLM contract (`shared.llm.base.LLM`), over every installed LLM plugin.

A third-party LLM is checked too once installed. It is built from `{}` unless
`MINIMAL_OPTIONS` names it; the round trips point it at a scripted OpenAI-compatible server
(`devstack.scripted_llm`, on 127.0.0.1 in the test's event loop) through `defaults`, plus the
options `SERVER_OPTIONS` gives it for the server's base URL if it does not use `defaults`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.scripted_llm import ScriptedLLM, reply, status
from shared.events import ChatMessage, Role
from shared.llm.base import LLM, ChatCompletion, LLMError
from shared.plugins import PluginKind, PluginRegistry
from shared.settings import LLMSettings
from tests.contracts.common import SingleRegistry, check_unknown_option_is_refused, installed

KIND = PluginKind.llms
LLMS = installed(KIND)

# The least options an LLM needs to be built; an LLM not listed is built from `{}`.
MINIMAL_OPTIONS: dict[str, dict[str, Any]] = {}
# Options pointing an LLM at a server's base URL, for LLMs that do not take it from `defaults`.
SERVER_OPTIONS: dict[str, Callable[[str], dict[str, Any]]] = {}

ASKED_MODEL = "contract-asked-model"
SERVED_MODEL = "contract-served-model"
HELLO = [ChatMessage(role=Role.user, content="Say hello.")]


def build(name: str, registry: PluginRegistry | None = None, **context: Any) -> LLM:
    llm = (registry or PluginRegistry()).build(KIND, name, MINIMAL_OPTIONS.get(name, {}), **context)
    assert isinstance(llm, LLM)
    return llm


def build_for(name: str, server: ScriptedLLM, registry: PluginRegistry | None = None) -> LLM:
    """`name` pointed at `server`, asking for `ASKED_MODEL`."""
    server_options = SERVER_OPTIONS[name](server.base_url) if name in SERVER_OPTIONS else {}
    options = {**MINIMAL_OPTIONS.get(name, {}), **server_options}
    defaults = LLMSettings(base_url=server.base_url, model=ASKED_MODEL, api_key=SecretStr("k"))
    llm = (registry or PluginRegistry()).build(KIND, name, options, defaults=defaults)
    assert isinstance(llm, LLM)
    return llm


def check_built_alone(llm: LLM) -> None:
    """Built with no context and no event loop: it names its model and its parameters."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    assert isinstance(llm.model, str) and llm.model.strip()
    assert isinstance(llm.params, Mapping)


async def check_round_trip(llm: LLM, server: ScriptedLLM) -> None:
    """One chat: the scripted text and the served model come back; per-call parameters and
    the response format reach the endpoint."""
    response_format = {"type": "json_object"}
    async with llm:
        completion = await llm.chat(HELLO, response_format=response_format, max_tokens=17)
    assert isinstance(completion, ChatCompletion)
    assert completion.text == "hello from the script"
    assert completion.model == SERVED_MODEL
    assert completion.finish_reason == "stop"
    (body,) = server.requests
    assert body["response_format"] == response_format and body["max_tokens"] == 17
    assert [m["content"] for m in body["messages"]] == ["Say hello."]


async def check_refusal(llm: LLM) -> None:
    """An endpoint's 400 is an `LLMError` with the status, not retryable."""
    async with llm:
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO)
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "no such model" in str(caught.value)


@pytest.mark.parametrize("name", LLMS)
def test_built_from_its_options_alone(name: str) -> None:
    check_built_alone(build(name))


@pytest.mark.parametrize("name", LLMS)
async def test_a_chat_round_trip(name: str) -> None:
    async with ScriptedLLM([reply("hello from the script", model=SERVED_MODEL)]) as server:
        llm = build_for(name, server)
        assert llm.model == ASKED_MODEL
        await check_round_trip(llm, server)


@pytest.mark.parametrize("name", LLMS)
async def test_an_endpoint_refusal_is_an_llm_error(name: str) -> None:
    refusal = status(400, {"error": {"message": "no such model"}})
    async with ScriptedLLM([refusal]) as server:
        await check_refusal(build_for(name, server))


# The checks above can fail: broken LLMs do not pass them.


class Parrot(LLM):
    """Answers without asking anyone, naming its own model; swallows every option."""

    def __init__(self, **options: Any) -> None:
        self.model = str(options.get("model", "parrot"))
        self.params = {}

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        response_format: dict[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion:
        return ChatCompletion(
            text="hello", model=self.model, finish_reason="stop", usage=None, latency_ms=0.0
        )


async def test_an_llm_that_does_not_ask_the_endpoint_fails_the_checks() -> None:
    async with ScriptedLLM([reply("hello from the script", model=SERVED_MODEL)]) as server:
        with pytest.raises(AssertionError):
            await check_round_trip(build_for("parrot", server, SingleRegistry(Parrot)), server)
        with pytest.raises(pytest.fail.Exception):
            await check_refusal(build_for("parrot", server, SingleRegistry(Parrot)))


def test_an_llm_taking_any_option_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="takes any option"):
        check_unknown_option_is_refused(SingleRegistry(Parrot), KIND, "parrot", {})
