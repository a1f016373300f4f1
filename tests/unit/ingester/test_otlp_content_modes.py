"""Every message-content mode of the official OpenAI instrumentation makes the same record.

Payloads are recorded at test time: the real `openai` client, instrumented by the real
`opentelemetry-instrumentation-openai-v2`, calls the scripted LLM server; the spans and log
records it emits are encoded as its OTLP exporters would send them and posted to the ingester's
`/v1/traces` and `/v1/logs`, in either order. Content on the span (SPAN_ONLY), in a log event
(EVENT_ONLY), in both (SPAN_AND_EVENT: still one record), or in the older per-message log
events: the same record id, messages, answer, model and usage.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from devstack.scripted_llm import ScriptedLLM, reply
from shared.events import Record
from shared.settings import IngestSettings
from tests.support.genai_instrumentation import CONVERSATION, Recorded, record_call
from tests.unit.ingester.http_app import Ingester, ingester
from tests.unit.ingester.otlp_export import otlp_json

ANSWER = "Kafka is a distributed, append-only log."
TRACES, LOGS = "/v1/traces", "/v1/logs"


async def recorded(mode: str, seed: int = 7, **params: Any) -> Recorded:
    """One instrumented call in `mode`, answered by the scripted LLM."""
    served = reply(ANSWER, model="qwen-served", prompt_tokens=21, completion_tokens=7)
    async with ScriptedLLM([served]) as server:
        call = await record_call(mode, server.base_url, seed=seed, temperature=0.2, **params)
    assert call.answer == ANSWER
    return call


def essentials(record: Record) -> dict[str, Any]:
    [response] = record.responses
    return {
        "record_id": record.record_id,
        "flow": record.flow,
        "messages": [(m.role.value, m.content) for m in record.messages or []],
        "response": (response.text, response.model, response.finish_reason, response.source),
        "usage": response.usage.model_dump() if response.usage else None,
        "params": response.params,
        "metadata": {k: record.metadata.get(k) for k in ("trace_id", "span_id", "service_name")},
    }


async def send(ing: Ingester, call: Recorded, order: str, encoding: str = "protobuf") -> None:
    """Post the call's traces and logs, in `order`, each answered 200."""
    bodies = {
        TRACES: call.traces,
        LOGS: call.logs,
    }
    paths = [TRACES, LOGS] if order == "traces-first" else [LOGS, TRACES]
    for path in paths:
        if encoding == "protobuf":
            response = await ing.otlp_export(path, bodies[path].SerializeToString())
        else:
            response = await ing.otlp_export(path, otlp_json(bodies[path]), "application/json")
        assert response.status_code == 200, (path, response.text)


@pytest.fixture(scope="module")
async def expected() -> dict[str, Any]:
    """The record of the call with its content on the span, as the ingester always made it."""
    call = await recorded("SPAN_ONLY")
    async with ingester() as ing:
        response = await ing.otlp_export(TRACES, call.traces.SerializeToString())
        assert response.status_code == 200, response.text
        [record] = ing.publisher.records()
    found = essentials(record)
    assert found["messages"] == [(m["role"], m["content"]) for m in CONVERSATION]
    assert found["response"] == (ANSWER, "qwen-served", "stop", "app")
    assert found["usage"] == {"prompt_tokens": 21, "completion_tokens": 7}
    assert found["params"] == {"temperature": 0.2}
    assert found["metadata"] == {
        "trace_id": call.trace_id,
        "span_id": call.span_id,
        "service_name": "chat-app",
    }
    return found


@pytest.mark.parametrize("mode", ["EVENT_ONLY", "LEGACY_EVENTS", "SPAN_AND_EVENT"])
@pytest.mark.parametrize("order", ["traces-first", "logs-first"])
async def test_content_in_log_events_makes_the_same_record(
    mode: str, order: str, expected: dict[str, Any]
) -> None:
    call = await recorded(mode)
    assert len(call.logs.resource_logs) == 1  # the instrumentation did emit log events
    async with ingester() as ing:
        await send(ing, call, order)
        records = ing.publisher.records()
        stats = await ing.stats()
    assert [essentials(record) for record in records] == [expected]  # one record, the same
    assert stats["otlp_spans_without_content"] == 0
    assert stats["otlp_join_waiting"] == 0  # nothing left waiting


async def test_log_events_in_otlp_json_and_gzip(expected: dict[str, Any]) -> None:
    call = await recorded("EVENT_ONLY")
    async with ingester() as ing:
        await send(ing, call, "logs-first", encoding="json")
        assert [essentials(record) for record in ing.publisher.records()] == [expected]
    async with ingester() as ing:
        traces = await ing.otlp_export(TRACES, call.traces.SerializeToString())
        logs = await ing.otlp_export(
            LOGS, gzip.compress(call.logs.SerializeToString()), **{"content-encoding": "gzip"}
        )
        assert (traces.status_code, logs.status_code) == (200, 200), logs.text
        answer = ExportLogsServiceResponse()
        answer.ParseFromString(logs.content)
        assert not answer.HasField("partial_success")
        assert [essentials(record) for record in ing.publisher.records()] == [expected]


async def test_events_arriving_within_the_wait_complete_the_span(
    expected: dict[str, Any],
) -> None:
    call = await recorded("EVENT_ONLY")
    async with ingester(IngestSettings(otlp_join_wait_s=1.0)) as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        await asyncio.sleep(0.5)
        assert ing.publisher.records() == []
        assert (await ing.stats())["otlp_spans_held"] == 1
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        assert [essentials(record) for record in ing.publisher.records()] == [expected]
        await asyncio.sleep(0.7)  # past the first wait: nothing more happens
        stats = await ing.stats()
    assert len(ing.publisher.records()) == 1
    assert stats["otlp_spans_without_content"] == stats["otlp_events_without_span"] == 0


async def test_a_retried_export_after_a_failed_publish_makes_the_record_once(
    expected: dict[str, Any],
) -> None:
    call = await recorded("LEGACY_EVENTS")  # three events: retried, they must not double
    async with ingester() as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        ing.publisher.fail_next = True
        failed = await ing.otlp_export(LOGS, call.logs.SerializeToString())
        assert failed.status_code == 503, failed.text
        assert ing.publisher.records() == []
        retried = await ing.otlp_export(LOGS, call.logs.SerializeToString())
        assert retried.status_code == 200, retried.text
        assert [essentials(record) for record in ing.publisher.records()] == [expected]


async def test_a_failed_publish_of_traces_keeps_the_events_waiting(
    expected: dict[str, Any],
) -> None:
    call = await recorded("EVENT_ONLY")
    async with ingester() as ing:
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        ing.publisher.fail_next = True
        failed = await ing.otlp_export(TRACES, call.traces.SerializeToString())
        assert failed.status_code == 503, failed.text
        retried = await ing.otlp_export(TRACES, call.traces.SerializeToString())
        assert retried.status_code == 200, retried.text
        assert [essentials(record) for record in ing.publisher.records()] == [expected]
