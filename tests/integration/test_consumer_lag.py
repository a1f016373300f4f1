"""Consumer lag against the real broker: records produced with no consumer running are the
group's lag, per partition; a service started on them reports that lag on its health port's
/metrics while its handler holds the first record, and none once it has handled them all."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from devstack.testing import free_port
from shared.broker import ensure_topics
from shared.consumer_lag import consumer_lag
from shared.flows import parse_flows
from shared.service import ServiceContext, ServiceSpec
from shared.settings import Settings
from tests.support.service_helpers import produce, running_service

N = 7
TOPIC = "lag.input"
FLOWS = parse_flows({"flows": {"any": {}}}, "lag test flows")


class Item(BaseModel):
    n: int


async def lag_on_metrics(port: int, topic: str) -> dict[int, float]:
    """`loopline_consumer_lag` of the service `lagged` per partition, as /metrics shows it."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        int(sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "loopline_consumer_lag"
        for sample in family.samples
        if sample.labels["service"] == "lagged" and sample.labels["topic"] == topic
    }


async def wait_for_lag(port: int, topic: str, wanted: dict[int, float]) -> None:
    deadline, seen = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        seen = await lag_on_metrics(port, topic)
        if seen == wanted:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"lag on /metrics: {seen}, wanted {wanted}")


async def test_lag_per_partition_before_and_while_a_service_consumes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    kafka = settings.kafka.model_copy(
        update={"topic_prefix": f"lag{tag}.", "group_prefix": f"lag-{tag}"}
    )
    port = free_port()
    settings = settings.model_copy(update={"kafka": kafka, "health_port": port})
    monkeypatch.setattr("shared.consumer_lag.LAG_INTERVAL_S", 0.5)
    await ensure_topics(kafka, [TOPIC, f"{TOPIC}.dlq"])
    # One send at a time: Tansu reports a multi-record batch's end low (see consumer_lag).
    await produce(
        kafka, kafka.topic(TOPIC), [Item(n=n).model_dump_json().encode() for n in range(N)]
    )

    # Nobody consumed yet: the group has no commit, so its lag is every record.
    lags = await consumer_lag(kafka, f"lag-{tag}-lagged", [TOPIC])
    per_partition = {tp.partition: float(lag) for tp, lag in lags.items()}
    assert sum(per_partition.values()) == N
    assert sorted(per_partition) == list(range(kafka.topic_partitions))

    release, handled = asyncio.Event(), []

    async def handle(item: Item, ctx: ServiceContext) -> None:
        await release.wait()  # holds the first record: nothing is committed meanwhile
        handled.append(item.n)

    spec = ServiceSpec(
        name="lagged",
        consumes=(TOPIC,),
        produces=(),
        register=lambda ctx: ctx.consume(TOPIC, Item, handle),
    )
    async with running_service(spec, settings, FLOWS):
        await wait_for_lag(port, kafka.topic(TOPIC), per_partition)
        release.set()
        await wait_for_lag(port, kafka.topic(TOPIC), dict.fromkeys(per_partition, 0.0))
    assert sorted(handled) == list(range(N))
