"""Metrics move when a record passes through a service (the generator on FastStream's test
broker, against a scripted LLM endpoint), and docs/metrics.md documents every metric."""

from __future__ import annotations

import asyncio

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.scripted_llm import ScriptedLLM, reply
from services.generator.app import register
from shared.broker import build_broker
from shared.events import RECORDS_INGESTED, RECORDS_JUDGED, Record
from shared.flows import parse_flows
from shared.metrics import record_passed
from shared.service import ServiceContext
from shared.settings import LLMSettings, Settings
from tests.support.metrics import documented, family_name, load_every_metric, registered, value

FLOW = "metrics-flow"
BROKER = {"app_name": "loopline", "broker": "kafka", "service": "generator"}


def generator(base_url: str) -> ServiceContext:
    settings = Settings(llm=LLMSettings(base_url=base_url, model="metrics-model"))
    broker, dead_letters = build_broker(settings, "generator")
    flows = parse_flows(
        {
            "flows": {
                FLOW: {"generate": [{"plugin": "openai", "options": {"model": "metrics-model"}}]}
            }
        },
        "test",
    )
    return ServiceContext(
        name="generator", settings=settings, flows=flows, broker=broker, dead_letters=dead_letters
    )


def readings() -> dict[str, float]:
    handler = {**BROKER, "handler": RECORDS_INGESTED}
    return {
        "in": value("faststream_received_messages_total", **handler),
        "out": value(
            "faststream_published_messages_total",
            **BROKER,
            destination=RECORDS_JUDGED,
            status="success",
        ),
        "handled": value(
            "faststream_received_processed_messages_duration_seconds_count", **handler
        ),
        "stage": value("loopline_records_total", service="generator", flow=FLOW, stage="generated"),
        "batches": value("loopline_batch_size_count", service="generator", topic=RECORDS_INGESTED),
        "batched": value("loopline_batch_size_sum", service="generator", topic=RECORDS_INGESTED),
        "dead": value(
            "loopline_dead_letters_total",
            service="generator",
            topic=RECORDS_INGESTED,
            error_type="ValidationError",
        ),
        "dead out": value(
            "faststream_published_messages_total",
            **BROKER,
            destination=f"{RECORDS_INGESTED}.dlq",
            status="success",
        ),
        "llm": value("loopline_llm_requests_total", model="metrics-model", outcome="ok"),
    }


async def test_metrics_move_when_a_record_passes_the_generator() -> None:
    async with ScriptedLLM(responder=lambda body: reply("an answer")) as server:
        ctx = generator(server.base_url)
        passed: asyncio.Queue[Record] = asyncio.Queue()

        @ctx.broker.subscriber(RECORDS_JUDGED, group_id="reader")
        async def read(message: KafkaMessage) -> None:
            passed.put_nowait(Record.model_validate_json(message.body))

        register(ctx)
        before = readings()
        async with TestKafkaBroker(ctx.broker) as broker:
            record = Record(flow=FLOW, instruction="Say hello.")
            await broker.publish(record.to_bytes(), topic=RECORDS_INGESTED)
            await asyncio.wait_for(passed.get(), timeout=10)
            await broker.publish(b"not a record", topic=RECORDS_INGESTED)
        for close in ctx.closers:
            await close()
    after = readings()
    moved = {name: after[name] - before[name] for name in before}
    assert moved == {
        "in": 2,  # the record and the bad message
        "out": 1,
        "handled": 2,
        "stage": 1,
        "batches": 2,  # the generator consumes in batches: one each here
        "batched": 2,
        "dead": 1,
        "dead out": 1,
        "llm": 1,
    }


def test_stages_are_counted_under_their_names() -> None:
    before = value("loopline_records_total", service="judge", flow=FLOW, stage="judged")
    record_passed("judge", FLOW, "judge")
    record_passed("judge", FLOW, "judged", 2)
    after = value("loopline_records_total", service="judge", flow=FLOW, stage="judged")
    assert after - before == 3
    with pytest.raises(ValueError, match="unknown stage"):
        record_passed("judge", FLOW, "judgd")


def test_the_table_documents_every_metric_and_only_those() -> None:
    load_every_metric()
    families = registered()
    table = documented()
    ours = {
        name
        for name in families
        if name.startswith(("loopline_", "faststream_")) and not name.endswith("_created")
    }
    documented_families = {family_name(name, kind) for name, kind in table.items()}
    assert sorted(ours - documented_families) == []
    for name, kind in table.items():
        assert families.get(family_name(name, kind)) == kind, name
