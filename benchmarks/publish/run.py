"""Publish benchmark: records/s landed in Argilla by the publisher vs the SDK's records.log.

Starts the local stack's Kafka and Argilla (with its search engine and worker). Side by side on
the same server and the same records:
  1. anchor: the argilla SDK's `dataset.records.log(records, batch_size=1000)`;
  2. Loopline: the argilla-publisher service draining a pre-filled `records.judged` topic
     (from its first poll until every record is announced on `records.published`).
Every process it starts is stopped by pid.

    python benchmarks/publish/run.py [--records 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import argilla as rg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import devstack as stack
from devstack.testing import config_for_tests
from services.argilla_publisher.app import SERVICE as PUBLISHER
from services.argilla_publisher.templates.preference import PreferenceTemplate
from shared.broker import ensure_topics
from shared.events import RECORDS_JUDGED, RECORDS_PUBLISHED, PublishedRecord, Record
from shared.flows import parse_flows
from shared.service import run_service
from shared.settings import ArgillaSettings, KafkaSettings, Settings

REPO = Path(__file__).resolve().parents[2]


def make_records(count: int, run: str) -> list[Record]:
    return [
        Record.model_validate(
            {
                "record_id": f"bench-{run}-{i}",
                "flow": "bench",
                "instruction": f"How do I reverse a list in Python? (variant {i})",
                "responses": [
                    {"text": "Use slicing: `xs[::-1]` returns a reversed copy.", "model": "m-a"},
                    {"text": "Call `xs.reverse()` to reverse in place.", "model": "m-b"},
                ],
                "judgments": [
                    {
                        "rubric": "multi-aspect",
                        "judge_model": "judge",
                        "ratings": [
                            [{"aspect": "overall", "score": 4}],
                            [{"aspect": "overall", "score": 3}],
                        ],
                        "margin": 1.0,
                    }
                ],
                "metadata": {"source": "bench"},
                "tags": ["bench"],
            }
        )
        for i in range(count)
    ]


def sdk_anchor(config: stack.StackConfig, records: list[Record], run: str) -> float:
    client = rg.Argilla(
        api_url=config.argilla_url, api_key=config.argilla_api_key.get_secret_value()
    )
    template = PreferenceTemplate()
    dataset = rg.Dataset(
        name=f"sdk-{run}",
        workspace=config.argilla_workspace,
        settings=template.settings(1),
        client=client,
    ).create()
    # Like Loopline's figure, the first batch (1000) is left out: it is logged, then the rest timed.
    first, rest = records[:1000], records[1000:]
    dataset.records.log([template.to_record(r) for r in first], batch_size=1000)
    started = time.perf_counter()
    dataset.records.log([template.to_record(r) for r in rest], batch_size=1000)
    return len(rest) / (time.perf_counter() - started)


async def loopline(config: stack.StackConfig, records: list[Record], run: str) -> float:
    kafka = KafkaSettings(
        bootstrap_servers=config.kafka_bootstrap,
        topic_partitions=2,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        group_prefix=f"bench-{run}",
    )
    settings = Settings(
        kafka=kafka,
        argilla=ArgillaSettings(api_url=config.argilla_url, api_key=config.argilla_api_key),
    )
    flows = parse_flows(
        {
            "flows": {
                "bench": {
                    "publish": {
                        "plugin": "preference",
                        "dataset": f"loopline-{run}",
                        "batch_size": 1000,
                        "flush_interval_s": 1.0,
                    }
                }
            }
        },
        "bench",
    )
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka_bootstrap, linger_ms=10)
    await producer.start()
    await ensure_topics(kafka, [*PUBLISHER.topics()])
    for r in records:
        await producer.send(kafka.topic(RECORDS_JUDGED), r.to_bytes(), key=r.record_id.encode())
    await producer.flush()
    await producer.stop()

    consumer = AIOKafkaConsumer(
        kafka.topic(RECORDS_PUBLISHED),
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    wanted = {r.record_id for r in records}
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        run_service(PUBLISHER, settings, stop=stop, flows=flows, ready=ready)
    )
    await ready.wait()
    # Steady state: from the first batch announced to the last, over the records after it
    # (start-up, the consumer group join and the first batch's upsert are left out).
    seen: set[str] = set()
    first: tuple[float, int] | None = None
    while seen < wanted:
        for messages in (await consumer.getmany(timeout_ms=100)).values():
            for m in messages:
                seen.add(PublishedRecord.model_validate_json(m.value or b"").record_id)
        if first is None and seen:
            first = (time.perf_counter(), len(seen))
    done = time.perf_counter()
    await consumer.stop()
    stop.set()
    await service
    assert first is not None
    return (len(seen) - first[1]) / (done - first[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    records = make_records(args.records, run)
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        config = config_for_tests(Path(tmp) / "stack", REPO / ".loopline" / "install")
        try:
            stack.up(
                config,
                progress=lambda m: None,
                components=["kafka", "search", "argilla", "argilla-worker"],
            )
            sdk_rate = sdk_anchor(config, records, run)
            loopline_rate = asyncio.run(loopline(config, records, run))
        finally:
            stack.down(config)
    print(f"records                      {args.records}")
    print(f"anchor (SDK records.log)     {sdk_rate:8.1f} records/s  (batch_size 1000)")
    print(f"loopline argilla-publisher   {loopline_rate:8.1f} records/s  (from a pre-filled topic)")
    ratio = loopline_rate / sdk_rate
    print(
        f"loopline / SDK               {ratio:8.2f}x  (target >= 1.25x: "
        f"{'met' if ratio >= 1.25 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
