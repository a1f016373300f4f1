"""The `openai` LLM client against a scripted OpenAI-compatible server: retries, limits, stats."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.scripted_llm import (
    Behaviour,
    ScriptedLLM,
    context_too_long,
    hang,
    malformed,
    reply,
    status,
)
from shared.events import ChatMessage, Role
from shared.llm.base import LLMError
from shared.llm.client import OpenAICompatibleLLM
from shared.llm.rate_limit import TokenBucket
from shared.llm.responses import parse_retry_after
from shared.settings import LLMSettings

HELLO = [ChatMessage(role=Role.user, content="hello")]


class FakeTime:
    """A clock that only moves when someone sleeps; records the sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def client(
    server: ScriptedLLM, fake: FakeTime | None = None, **options: Any
) -> OpenAICompatibleLLM:
    fake = fake or FakeTime()
    return OpenAICompatibleLLM(
        server.base_url, "scripted-model", sleep=fake.sleep, clock=fake.clock, **options
    )


async def test_429_waits_as_long_as_retry_after_says() -> None:
    fake = FakeTime()
    script: list[Behaviour] = [
        status(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}),
        reply("ok"),
    ]
    async with ScriptedLLM(script) as server, client(server, fake) as llm:
        result = await llm.chat(HELLO)
    assert result.text == "ok"
    assert fake.sleeps == [1.0]
    assert len(server.requests) == 2
    assert (llm.stats.requests, llm.stats.retries, llm.stats.failures) == (1, 1, 0)


async def test_retry_after_above_backoff_max_is_honoured_up_to_two_minutes() -> None:
    fake = FakeTime()
    script: list[Behaviour] = [
        status(503, headers={"Retry-After": "90"}),
        status(503, headers={"Retry-After": "600"}),
        reply("ok"),
    ]
    async with ScriptedLLM(script) as server, client(server, fake, backoff_max_s=30) as llm:
        await llm.chat(HELLO)
    assert fake.sleeps == [90.0, 30.0]


def test_retry_after_parses_seconds_dates_and_milliseconds() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "7"}, now) == 7.0
    assert (
        parse_retry_after({"retry-after": format_datetime(now + timedelta(seconds=42))}, now) == 42
    )
    assert parse_retry_after({"Retry-After": format_datetime(now - timedelta(hours=1))}, now) == 0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "1"}, now) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}, now) is None
    assert parse_retry_after({}, now) is None


async def test_server_errors_are_retried_with_jittered_backoff() -> None:
    fake = FakeTime()
    script: list[Behaviour] = [
        status(500, {"error": {"message": "boom"}}),
        status(502),
        reply("fine"),
    ]
    async with (
        ScriptedLLM(script) as server,
        client(server, fake, backoff_initial_s=0.5) as llm,
    ):
        result = await llm.chat(HELLO)
    assert result.text == "fine"
    first, second = fake.sleeps
    assert 0 <= first <= 0.5 and 0 <= second <= 1.0
    assert llm.stats.retries == 2


async def test_exhausted_retries_say_how_many_attempts_and_the_last_error() -> None:
    script: list[Behaviour] = [
        status(503, {"error": {"message": f"overloaded #{n}"}}) for n in range(1, 4)
    ]
    async with ScriptedLLM(script) as server, client(server, max_retries=2) as llm:
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO)
    error = caught.value
    assert error.attempts == 3 and error.status_code == 503 and error.retryable
    assert "3 attempts" in str(error) and "overloaded #3" in str(error)
    assert len(server.requests) == 3
    assert (llm.stats.requests, llm.stats.retries, llm.stats.failures) == (1, 2, 1)


async def test_a_hanging_endpoint_times_out_and_the_retry_succeeds() -> None:
    async with ScriptedLLM([hang(10), reply("awake")]) as server:
        started = time.monotonic()
        async with client(server, timeout_s=0.3) as llm:
            result = await llm.chat(HELLO)
        elapsed = time.monotonic() - started
    assert result.text == "awake"
    assert len(server.requests) == 2
    assert 0.25 <= elapsed < 2


async def test_a_hanging_endpoint_fails_retryable_once_retries_are_spent() -> None:
    async with (
        ScriptedLLM([hang(10)]) as server,
        client(server, timeout_s=0.2, max_retries=0) as llm,
    ):
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO)
    assert caught.value.retryable and caught.value.attempts == 1
    assert "0.2 s" in str(caught.value)


async def test_malformed_json_and_missing_choices_are_retried() -> None:
    script: list[Behaviour] = [
        malformed(),
        status(200, {"choices": []}),
        status(200, [1, 2]),
        reply("whole"),
    ]
    async with ScriptedLLM(script) as server, client(server) as llm:
        result = await llm.chat(HELLO)
    assert result.text == "whole"
    assert len(server.requests) == 4 and llm.stats.retries == 3


async def test_malformed_json_counts_as_an_attempt() -> None:
    async with (
        ScriptedLLM([malformed(), malformed()]) as server,
        client(server, max_retries=1) as llm,
    ):
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO)
    assert caught.value.attempts == 2 and caught.value.retryable
    assert "not JSON" in str(caught.value)


async def test_a_prompt_longer_than_the_context_fails_fast() -> None:
    fake = FakeTime()
    async with (
        ScriptedLLM([context_too_long(9000, 4096), reply("never")]) as server,
        client(server, fake) as llm,
    ):
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO, max_tokens=8)
    error = caught.value
    assert error.status_code == 400 and not error.retryable and error.attempts == 1
    assert "exceeds the available context size (4096 tokens)" in str(error)
    assert len(server.requests) == 1 and fake.sleeps == []
    assert (llm.stats.retries, llm.stats.failures) == (0, 1)


@pytest.mark.parametrize("code", [401, 403, 404, 422])
async def test_client_errors_fail_fast(code: int) -> None:
    script: list[Behaviour] = [
        status(code, {"error": {"message": f"nope ({code})"}}),
        reply("never"),
    ]
    async with ScriptedLLM(script) as server, client(server) as llm:
        with pytest.raises(LLMError) as caught:
            await llm.chat(HELLO)
    assert caught.value.status_code == code and not caught.value.retryable
    assert f"nope ({code})" in str(caught.value)
    assert len(server.requests) == 1


async def test_an_unreachable_endpoint_is_a_retryable_error() -> None:
    async with ScriptedLLM() as server:
        base_url = server.base_url
    fake = FakeTime()
    llm = OpenAICompatibleLLM(base_url, "m", max_retries=2, sleep=fake.sleep)
    with pytest.raises(LLMError) as caught:
        await llm.chat(HELLO)
    await llm.aclose()
    assert caught.value.retryable and caught.value.attempts == 3 and len(fake.sleeps) == 2


async def test_in_flight_requests_are_bounded_per_endpoint_across_clients() -> None:
    async with ScriptedLLM(delay_s=0.05) as server:
        first = OpenAICompatibleLLM(server.base_url, "a", max_in_flight=3)
        second = OpenAICompatibleLLM(server.base_url + "/", "b", max_in_flight=10)
        try:
            results = await asyncio.gather(
                *(first.chat(HELLO) for _ in range(20)), *(second.chat(HELLO) for _ in range(5))
            )
        finally:
            await first.aclose()
            await second.aclose()
    assert len(results) == 25
    assert server.max_in_flight == 3
    assert first.in_flight_limit is second.in_flight_limit


async def test_requests_per_minute_spaces_requests() -> None:
    fake = FakeTime()
    async with ScriptedLLM() as server, client(server, fake, requests_per_minute=2) as llm:
        for _ in range(4):
            await llm.chat(HELLO)
    # A full bucket lets two through, then one every 30 s.
    assert fake.sleeps == pytest.approx([30.0, 30.0])
    assert len(server.requests) == 4


async def test_the_rate_limit_is_shared_by_clients_of_the_same_model() -> None:
    fake = FakeTime()
    async with (
        ScriptedLLM() as server,
        client(server, fake, requests_per_minute=60) as one,
        client(server, fake, requests_per_minute=6) as two,
    ):
        assert one.request_bucket is two.request_bucket
        assert one.request_bucket is not None and one.request_bucket.capacity == 60
        other = OpenAICompatibleLLM(server.base_url, "other-model", requests_per_minute=60)
        assert other.request_bucket is not one.request_bucket
        await other.aclose()


async def test_tokens_are_estimated_then_corrected_with_the_real_usage() -> None:
    fake = FakeTime()
    prompt = [ChatMessage(role=Role.user, content="x" * 400)]  # estimate: 100 + max_tokens
    script: list[Behaviour] = [
        reply("a", prompt_tokens=120, completion_tokens=10),  # 130 used, 150 estimated
        reply("b", prompt_tokens=200, completion_tokens=50),  # 250 used, 150 estimated
    ]
    async with (
        ScriptedLLM(script) as server,
        client(server, fake, tokens_per_minute=1000, max_tokens=50) as llm,
    ):
        bucket = llm.token_bucket
        assert bucket is not None
        await llm.chat(prompt)
        assert bucket.available == pytest.approx(1000 - 130)
        await llm.chat(prompt)
        assert bucket.available == pytest.approx(1000 - 130 - 250)
    assert (llm.stats.prompt_tokens, llm.stats.completion_tokens) == (320, 60)
    assert fake.sleeps == []


async def test_token_budget_makes_requests_wait() -> None:
    fake = FakeTime()
    prompt = [ChatMessage(role=Role.user, content="y" * 400)]  # 100 tokens estimated
    script: list[Behaviour] = [reply("a", prompt_tokens=100, completion_tokens=0) for _ in range(3)]
    async with (
        ScriptedLLM(script) as server,
        client(server, fake, tokens_per_minute=120) as llm,
    ):
        for _ in range(3):
            await llm.chat(prompt)
    # 120 at first; 20 left after one; 100 more come in 40 s (2 tokens/s).
    assert fake.sleeps == pytest.approx([40.0, 50.0])


async def test_bucket_lets_an_oversized_request_through_once_full() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10, 1, initial=0, clock=fake.clock, sleep=fake.sleep)
    waited = await bucket.acquire(25)
    assert waited == pytest.approx(10)
    assert bucket.available == pytest.approx(-15)
    bucket.credit(100)
    assert bucket.available == 10
    bucket.debit(4)
    assert bucket.available == 6


async def test_bucket_waiters_sleep_instead_of_spinning_and_go_in_order() -> None:
    fake = FakeTime()
    bucket = TokenBucket(1, 2, clock=fake.clock, sleep=fake.sleep)
    order: list[int] = []

    async def take(n: int) -> None:
        await bucket.acquire(1)
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert fake.sleeps == pytest.approx([0.5] * 4)


async def test_generation_params_and_stats() -> None:
    async with (
        ScriptedLLM([reply("one", prompt_tokens=3, completion_tokens=4)]) as server,
        OpenAICompatibleLLM(
            server.base_url, "m", params={"temperature": 0.1}, seed=7, stop=["\n"]
        ) as llm,
    ):
        first = await llm.chat(HELLO, temperature=0.9, response_format={"type": "json_object"})
        second = await llm.chat(HELLO)
    assert first.usage is not None and first.usage.total_tokens == 7
    assert first.finish_reason == "stop" and first.latency_ms > 0
    assert second.text == "echo: hello"
    body = server.requests[0]
    assert body["temperature"] == 0.9 and body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["response_format"] == {"type": "json_object"}
    assert server.requests[1]["temperature"] == 0.1
    assert llm.stats.requests == 2 and llm.stats.prompt_tokens == 3 + 1


async def test_from_options_splits_client_options_from_generation_params() -> None:
    async with ScriptedLLM() as server:
        base_url = server.base_url
        llm = OpenAICompatibleLLM.from_options(
            {
                "model": "judge-7b",
                "timeout_s": 5,
                "max_in_flight": 2,
                "max_retries": 1,
                "backoff_initial_s": 0.1,
                "backoff_max_s": 2,
                "requests_per_minute": 600,
                "tokens_per_minute": None,
                "temperature": 0,
                "top_p": 0.9,
                "max_tokens": 32,
                "params": {"seed": 1, "temperature": 1},
            },
            defaults=LLMSettings(
                base_url=server.base_url,
                model="default-model",
                api_key=SecretStr("default-key"),
            ),
        )
        async with llm:
            await llm.chat(HELLO)
    assert (llm.base_url, llm.model) == (base_url, "judge-7b")
    assert (llm.timeout_s, llm.max_in_flight, llm.max_retries) == (5, 2, 1)
    assert (llm.backoff_initial_s, llm.backoff_max_s) == (0.1, 2)
    assert (llm.requests_per_minute, llm.tokens_per_minute) == (600, None)
    assert llm.params == {"seed": 1, "temperature": 0, "top_p": 0.9, "max_tokens": 32}
    (received,) = server.received
    assert received.body["model"] == "judge-7b" and received.body["top_p"] == 0.9
    assert "timeout_s" not in received.body and "max_retries" not in received.body
    assert received.headers["authorization"] == "Bearer default-key"


def test_from_options_defaults_and_keys() -> None:
    def build(options: dict[str, Any]) -> OpenAICompatibleLLM:
        return OpenAICompatibleLLM.from_options(
            options,
            defaults=LLMSettings(
                base_url="http://127.0.0.1:8080/v1", model="qwen", api_key=SecretStr("local")
            ),
        )

    plain = build({"base_url": None})
    assert (plain.base_url, plain.model, plain.params) == ("http://127.0.0.1:8080/v1", "qwen", {})
    assert plain._headers == {"authorization": "Bearer local"}
    elsewhere = build({"base_url": "https://api.example.com/v1"})
    assert elsewhere._headers == {}, "the default key must not leak to another endpoint"
    keyed = build({"base_url": "https://api.example.com/v1", "api_key": "sk-1"})
    assert keyed._headers == {"authorization": "Bearer sk-1"}
    with pytest.raises(TypeError, match="params"):
        build({"params": [1]})


async def test_api_key_env_and_plain_string_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTED_LLM_KEY", "sk-from-env")
    async with ScriptedLLM() as server:
        async with OpenAICompatibleLLM.from_options(
            {"api_key_env": "SCRIPTED_LLM_KEY"},
            defaults=LLMSettings(base_url=server.base_url, model="m", api_key=SecretStr("default")),
        ) as from_env:
            await from_env.chat(HELLO)
        async with OpenAICompatibleLLM(server.base_url, "m", api_key="sk-plain") as plain:
            await plain.chat(HELLO)
        async with OpenAICompatibleLLM(server.base_url, "m") as keyless:
            await keyless.chat(HELLO)
    env_request, plain_request, keyless_request = server.received
    assert env_request.headers["authorization"] == "Bearer sk-from-env"
    assert plain_request.headers["authorization"] == "Bearer sk-plain"
    assert "authorization" not in keyless_request.headers
    monkeypatch.delenv("SCRIPTED_LLM_KEY")
    with pytest.raises(ValueError, match="SCRIPTED_LLM_KEY"):
        OpenAICompatibleLLM("http://x/v1", "m", api_key_env="SCRIPTED_LLM_KEY")


async def test_the_responder_scripts_a_judge() -> None:
    def prefer_mark(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        return '{"preferred": 1}' if "B: MARK" in prompt else '{"preferred": 0}'

    async with (
        ScriptedLLM(responder=prefer_mark) as server,
        OpenAICompatibleLLM(server.base_url, "judge") as llm,
    ):
        first = await llm.chat([ChatMessage(role=Role.user, content="A: x\nB: MARK")])
        second = await llm.chat([ChatMessage(role=Role.user, content="A: MARK\nB: y")])
    assert (first.text, second.text) == ('{"preferred": 1}', '{"preferred": 0}')
    assert server.connections == 1, "httpx should reuse the keep-alive connection"
