"""`/v1/logs` and the span/event join over HTTP: the wait running out (span without content,
events without span), the join's bounds, per-item refusals, body bounds and keys."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from pydantic import SecretStr

from devstack.scripted_llm import ScriptedLLM, reply
from shared.settings import ApiKey, IngestSettings
from tests.support.genai_instrumentation import Recorded, record_call
from tests.unit.ingester.http_app import Ingester, ingester

TRACES, LOGS = "/v1/traces", "/v1/logs"


async def recorded(mode: str, seed: int = 7, text: str = "A log.", **kw: Any) -> Recorded:
    async with ScriptedLLM([reply(text)]) as server:
        return await record_call(mode, server.base_url, seed=seed, **kw)


async def eventually(ing: Ingester, done: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """The stats once `done` holds (within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        stats = await ing.stats()
        if done(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)


def logs_answer(content: bytes) -> ExportLogsServiceResponse:
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(content)
    return answer


async def test_a_span_whose_events_never_come_is_counted_after_the_wait() -> None:
    call = await recorded("EVENT_ONLY")
    async with ingester(IngestSettings(otlp_join_wait_s=0.3)) as ing:
        sent = time.monotonic()
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        stats = await ing.stats()
        assert (stats["otlp_spans_held"], stats["otlp_spans_without_content"]) == (1, 0)
        assert stats["otlp_join_waiting"] == 1 and stats["otlp_join_bytes"] > 0
        stats = await eventually(ing, lambda s: s["otlp_spans_without_content"] == 1)
        assert stats["otlp_spans_without_content"] == 1
        assert time.monotonic() - sent >= 0.3
        assert (stats["otlp_join_waiting"], stats["otlp_join_bytes"]) == (0, 0)
        # The events, too late: they wait for a span that already left, then are counted.
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        stats = await eventually(ing, lambda s: s["otlp_events_without_span"] == 1)
        assert stats["otlp_events_without_span"] == 1
    assert ing.publisher.records() == []


async def test_without_content_capture_a_span_is_counted_as_before() -> None:
    call = await recorded("NO_CONTENT")
    assert not call.logs.resource_logs  # no events at all
    async with ingester(IngestSettings(otlp_join_wait_s=0.2)) as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        stats = await eventually(ing, lambda s: s["otlp_spans_without_content"] == 1)
    assert stats["otlp_spans_without_content"] == 1
    assert ing.publisher.records() == []


async def test_a_span_with_part_of_its_events_still_makes_a_record_at_the_wait() -> None:
    call = await recorded("LEGACY_EVENTS")
    [scope] = call.logs.resource_logs[0].scope_logs
    names = [record.event_name for record in scope.log_records]
    assert names == ["gen_ai.system.message", "gen_ai.user.message", "gen_ai.choice"]
    del scope.log_records[2]  # the answer's event never comes
    async with ingester(IngestSettings(otlp_join_wait_s=0.3)) as ing:
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        assert ing.publisher.records() == []  # still waiting for the answer
        await eventually(ing, lambda s: s["received"] == 1)
        [record] = ing.publisher.records()
    assert [m.content for m in record.messages or []] == ["Be brief.", "What is Kafka?"]
    assert record.responses == []


async def test_the_join_is_bounded_in_entries() -> None:
    calls = [await recorded("EVENT_ONLY", seed=s, text=f"Answer {s}.") for s in (1, 2, 3)]
    async with ingester(IngestSettings(otlp_join_max_entries=2, otlp_join_wait_s=60)) as ing:
        for call in calls:
            await ing.otlp_export(TRACES, call.traces.SerializeToString())
        stats = await eventually(ing, lambda s: s["otlp_spans_without_content"] == 1)
        assert stats["otlp_join_evicted"] == 1  # the oldest stopped waiting early
        assert stats["otlp_join_waiting"] == 2
        for call in calls[1:]:
            await ing.otlp_export(LOGS, call.logs.SerializeToString())
        assert {r.metadata["span_id"] for r in ing.publisher.records()} == {
            calls[1].span_id,
            calls[2].span_id,
        }
        await ing.otlp_export(LOGS, calls[0].logs.SerializeToString())
        stats = await ing.stats()
    assert len(ing.publisher.records()) == 2
    assert stats["otlp_join_waiting"] == 1  # the first call's events, waiting for a span


async def test_the_join_is_bounded_in_bytes() -> None:
    call = await recorded("EVENT_ONLY", resource={"padding": "x" * 2000})
    settings = IngestSettings(otlp_join_max_bytes=1024, otlp_join_wait_s=60)
    async with ingester(settings) as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        stats = await eventually(ing, lambda s: s["otlp_spans_without_content"] == 1)
        assert stats["otlp_join_evicted"] == 1
        assert (stats["otlp_join_waiting"], stats["otlp_join_bytes"]) == (0, 0)
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        assert (await ing.stats())["otlp_join_bytes"] <= 1024
    assert ing.publisher.records() == []


async def test_content_events_without_a_span_context_are_refused_by_place() -> None:
    call = await recorded("EVENT_ONLY")
    scope = call.logs.resource_logs[0].scope_logs[0]
    scope.log_records.add(body={"string_value": "an ordinary app log line"})  # ignored
    orphan = LogRecord()
    orphan.CopyFrom(scope.log_records[0])
    orphan.ClearField("trace_id")
    orphan.ClearField("span_id")
    scope.log_records.append(orphan)  # logRecords[2]
    async with ingester() as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        response = await ing.otlp_export(LOGS, call.logs.SerializeToString())
        stats = await ing.stats()
    assert response.status_code == 200, response.text
    partial = logs_answer(response.content).partial_success
    assert partial.rejected_log_records == 1
    assert "resourceLogs[0].scopeLogs[0].logRecords[2]" in partial.error_message
    assert "gen_ai.client.inference.operation.details" in partial.error_message
    assert stats["otlp_log_records_ignored"] == 1 and stats["otlp_events_rejected"] == 1
    assert len(ing.publisher.records()) == 1  # the joined event still made its record


async def test_a_refused_record_is_a_rejected_log_record() -> None:
    call = await recorded("EVENT_ONLY", text="long " * 400)
    async with ingester(max_message_bytes=1500) as ing:
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        response = await ing.otlp_export(LOGS, call.logs.SerializeToString())
    partial = logs_answer(response.content).partial_success
    assert partial.rejected_log_records == 1, response.content
    assert f"the record of span {call.span_id} (trace {call.trace_id})" in partial.error_message
    assert ing.publisher.records() == []


async def test_logs_bodies_are_bounded_like_traces() -> None:
    call = await recorded("LEGACY_EVENTS")  # three log records
    body = call.logs.SerializeToString()
    async with ingester(IngestSettings(max_log_records=2, max_body_bytes=4096)) as ing:
        too_many = await ing.otlp_export(LOGS, body)
        assert too_many.status_code == 413
        assert "more than 2 log records" in too_many.json()["detail"]
        bomb = zlib.compress(b"\0" * 100_000)
        inflated = await ing.otlp_export(LOGS, bomb, **{"content-encoding": "deflate"})
        assert inflated.status_code == 413, inflated.text
        garbage = await ing.otlp_export(LOGS, b"\xff\xff\xff")
        assert garbage.status_code == 400 and "protobuf" in garbage.json()["detail"]
        wrong = await ing.otlp_export(LOGS, body, "text/plain")
        assert wrong.status_code == 415
        shape = await ing.otlp_export(LOGS, b'{"resourceLogs": "x"}', "application/json")
        assert shape.status_code == 400 and "resourceLogs" in shape.json()["detail"]
        assert (await ing.stats())["otlp_join_waiting"] == 0


async def test_events_completing_a_span_of_another_flow_need_a_key_for_it() -> None:
    call = await recorded("EVENT_ONLY")
    keys = [
        ApiKey(name="admin", key=SecretStr("admin-key")),
        ApiKey(name="plain-only", key=SecretStr("plain-key"), flows=["plain"]),
    ]
    async with ingester(IngestSettings(api_keys=keys)) as ing:
        admin, plain = {"authorization": "Bearer admin-key"}, {"authorization": "Bearer plain-key"}
        traces = await ing.otlp_export(TRACES, call.traces.SerializeToString(), **admin)
        assert traces.status_code == 200
        denied = await ing.otlp_export(LOGS, call.logs.SerializeToString(), **plain)
        assert denied.status_code == 403 and "default" in denied.json()["detail"]
        assert (await ing.stats())["otlp_join_waiting"] == 1  # the span still waits
        allowed = await ing.otlp_export(LOGS, call.logs.SerializeToString(), **admin)
        assert allowed.status_code == 200
        [record] = ing.publisher.records()
    assert record.flow == "default"


async def test_what_waits_in_the_join_is_settled_at_a_stop() -> None:
    call = await recorded("LEGACY_EVENTS")
    [scope] = call.logs.resource_logs[0].scope_logs
    del scope.log_records[2]  # the answer's event has not come yet when the ingester stops
    async with ingester(IngestSettings(otlp_join_wait_s=3600)) as ing:
        await ing.otlp_export(LOGS, call.logs.SerializeToString())
        await ing.otlp_export(TRACES, call.traces.SerializeToString())
        assert ing.publisher.records() == []  # it would wait an hour
        await ing.otlp.settle_all()  # the service's stop, before the broker's
        [record] = ing.publisher.records()
        assert (await ing.stats())["otlp_join_waiting"] == 0
    assert [m.content for m in record.messages or []] == ["Be brief.", "What is Kafka?"]
