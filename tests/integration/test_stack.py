"""The local stack for real: Kafka (Tansu), Argilla (+ noida-db, worker), two llama.cpp servers
and Phoenix.

Downloads go to `.loopline/install` at the repository root, so they are reused between runs;
each stack gets its own temporary state dir and free loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import argilla as rg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, Field

from devstack import (
    ComponentStatus,
    StackConfig,
    StackError,
    down,
    install,
    lifecycle,
    status,
    up,
)
from devstack.process import group_members, is_alive
from devstack.testing import config_for_tests, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_DIR = REPO_ROOT / ".loopline" / "install"
ALL_COMPONENTS = {"kafka", "search", "llm", "llm-2", "argilla", "argilla-worker", "phoenix"}


def _gone(pid: int) -> bool:
    return not is_alive(pid) and not group_members(pid)


def _stop(config: StackConfig) -> None:
    down(config)
    assert all(not part.healthy and part.pid is None for part in status(config))


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StackConfig, list[ComponentStatus]]]:
    config = config_for_tests(tmp_path_factory.mktemp("stack"), INSTALL_DIR)
    install(config, print)
    started_at = time.monotonic()
    try:
        started = up(config, print)
        print(f"stack up in {time.monotonic() - started_at:.1f}s")
        yield config, started
    finally:
        down(config)


@pytest.fixture()
def config(stack: tuple[StackConfig, list[ComponentStatus]]) -> StackConfig:
    return stack[0]


def test_up_starts_every_component_healthy(
    stack: tuple[StackConfig, list[ComponentStatus]],
) -> None:
    _, started = stack
    assert {part.name for part in started} == ALL_COMPONENTS
    for part in started:
        assert part.healthy, part
        assert part.pid is not None and is_alive(part.pid), part


def test_status_shows_each_part_healthy_with_its_url(config: StackConfig) -> None:
    by_name = {part.name: part for part in status(config)}
    assert set(by_name) == ALL_COMPONENTS
    assert all(part.healthy and part.pid for part in by_name.values()), by_name
    assert by_name["kafka"].url == config.kafka_bootstrap
    assert by_name["argilla"].url == config.argilla_url
    assert by_name["llm"].url == config.llm_base_url
    assert by_name["phoenix"].url == config.phoenix_url
    for part in by_name.values():
        assert "127.0.0.1" in part.url


def test_second_up_starts_nothing(stack: tuple[StackConfig, list[ComponentStatus]]) -> None:
    config, started = stack
    again = up(config)
    assert {part.name: part.pid for part in again} == {part.name: part.pid for part in started}
    assert all(part.detail == "already running" for part in again)


def test_up_with_other_settings_leaves_the_running_stack_alone(
    stack: tuple[StackConfig, list[ComponentStatus]],
) -> None:
    config, started = stack
    moved = config.model_copy(
        update={"ports": config.ports.model_copy(update={"llm": free_port()})}
    )
    with pytest.raises(StackError) as raised:
        up(moved)
    assert raised.value.component == "llm"
    assert "other settings" in str(raised.value)
    assert {part.name: part.pid for part in status(config) if part.healthy} == {
        part.name: part.pid for part in started
    }


def test_argilla_sdk_creates_and_deletes_a_dataset(config: StackConfig) -> None:
    client = rg.Argilla(
        api_url=config.argilla_url, api_key=config.argilla_api_key.get_secret_value()
    )
    name = f"stack-test-{uuid.uuid4().hex[:8]}"
    settings = rg.Settings(
        fields=[rg.TextField(name="prompt")],
        questions=[rg.LabelQuestion(name="good", labels=["yes", "no"])],
    )
    dataset = rg.Dataset(
        name=name, workspace=config.argilla_workspace, settings=settings, client=client
    )
    dataset.create()
    try:
        dataset.records.log([{"prompt": "What is 2 + 2?"}])
        assert client.datasets(name=name, workspace=config.argilla_workspace) is not None
        assert len(list(dataset.records)) == 1
    finally:
        dataset.delete()
    assert name not in [listed.name for listed in client.datasets]


def _completion(base_url: str, model: str, **extra: object) -> dict[str, object]:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Is 17 a prime number? Answer briefly."}],
            "temperature": 0,
            **extra,
        },
        timeout=120,
    )
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def _chat(config: StackConfig, **extra: object) -> str:
    answer = _completion(config.llm_base_url, config.llm_model_name, **extra)
    content = answer["choices"][0]["message"]["content"]  # type: ignore[index]
    assert isinstance(content, str)
    return content


def test_llm_chat_completion_returns_text(config: StackConfig) -> None:
    assert _chat(config, max_tokens=32).strip()


def test_both_models_answer_under_their_own_names(config: StackConfig) -> None:
    """Two servers, one per model name; each reports its own name whatever name it is asked."""
    default, other = config.llm_servers
    assert (default.component, default.model_name) == ("llm", config.llm_model_name)
    assert {default.model_name, other.model_name} == {
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    }
    by_name = {part.name: part for part in status(config)}
    for server in (default, other):
        part = by_name[server.component]
        assert part.healthy and part.pid is not None and part.url == server.base_url, part
        listed = httpx.get(f"{server.base_url}/models", timeout=10).json()["data"]
        assert [model["id"] for model in listed] == [server.model_name]
        answer = _completion(server.base_url, server.model_name, max_tokens=16)
        assert answer["model"] == server.model_name
        # Asked for the other name, a server still answers with (and reports) its own model.
        foreign = other.model_name if server is default else default.model_name
        assert _completion(server.base_url, foreign, max_tokens=4)["model"] == server.model_name
    assert by_name["llm"].pid != by_name["llm-2"].pid


class Verdict(BaseModel):
    answer: bool
    confidence: int = Field(ge=1, le=5)
    reason: str = Field(max_length=120)


def test_llm_json_schema_response_validates(config: StackConfig) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "strict": True, "schema": Verdict.model_json_schema()},
    }
    content = _chat(config, max_tokens=200, response_format=response_format)
    verdict = Verdict.model_validate(json.loads(content))
    assert len(verdict.reason) <= 120


def test_failed_start_names_the_part_and_leaves_the_others_running(
    tmp_path: Path,
) -> None:
    config = config_for_tests(tmp_path / "busy", INSTALL_DIR)
    with socket.socket() as squatter:
        squatter.bind((config.host, config.ports.argilla))
        squatter.listen()
        try:
            with pytest.raises(StackError) as raised:
                up(config)
            error = raised.value
            assert error.component == "argilla"
            assert f"{config.ports.argilla}" in str(error)
            assert "already in use" in error.log_tail
            assert error.log_tail in str(error)
            running = {part.name for part in status(config) if part.pid is not None}
            assert {"kafka", "search", "llm"} <= running
            assert "argilla" not in running
        finally:
            pids = [part.pid for part in status(config) if part.pid]
            _stop(config)
    assert all(_gone(pid) for pid in pids)


def test_server_that_dies_at_start_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM server itself fails to bind (the pre-start port check is bypassed)."""
    config = config_for_tests(tmp_path / "dies", INSTALL_DIR)
    monkeypatch.setattr(lifecycle, "port_in_use", lambda host, port: False)
    with socket.socket() as squatter:
        squatter.bind((config.host, config.ports.llm))
        squatter.listen()
        try:
            with pytest.raises(StackError) as raised:
                up(config, components=["llm"])
        finally:
            _stop(config)
    error = raised.value
    assert error.component == "llm"
    assert "exited" in str(error)
    assert "Failed to init server" in error.log_tail


async def test_durable_kafka_keeps_messages_across_restart(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path / "durable", INSTALL_DIR).model_copy(
        update={"kafka_mode": "durable"}
    )
    topic, payload = "stack-durable", uuid.uuid4().bytes
    try:
        await asyncio.to_thread(up, config, components=["kafka"])
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, partition=0)
        finally:
            await producer.stop()

        stopped = await asyncio.to_thread(down, config)
        assert set(stopped) == {"kafka", "object-store"}
        await asyncio.to_thread(up, config, components=["kafka"])

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=config.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert message.value == payload
    finally:
        await asyncio.to_thread(_stop, config)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_down_leaves_no_process_behind(config: StackConfig) -> None:
    pids = [part.pid for part in status(config) if part.pid is not None]
    assert len(pids) == len(ALL_COMPONENTS)
    started_at = time.monotonic()
    stopped = down(config)
    print(f"stack down in {time.monotonic() - started_at:.1f}s")
    assert set(stopped) == ALL_COMPONENTS
    assert all(_gone(pid) for pid in pids)
    assert not list(config.run_dir.glob("*.pid"))
    assert all(part.pid is None and not part.healthy for part in status(config))
    assert down(config) == []
