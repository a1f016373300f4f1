"""The anchor's side of the spine benchmark: raw aiokafka over the same hops, the same broker,
the same bytes.

Three topics under the run's own prefix, named as Loopline's; this process produces each
record's `records.ingested` bytes (those the ingester wrote for it in the Loopline run just
before) to the first; a relay process per middle hop consumes and produces the record's
bytes of the next topic (`records.generated`, then `records.judged`, as Loopline's generator
and judge wrote them); a sink process consumes the last topic and notes when each record
arrived (`relay.py`). So every hop moves messages of Loopline's sizes, keyed the same.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaProducer
from children import Child, stop_all
from loopline_side import Pace, SideRun, SideSetup
from topics import create_spine, read_spine

from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, RECORDS_JUDGED
from shared.settings import KafkaSettings

RELAY = Path(__file__).resolve().parent / "relay.py"


def sink_lines(path: Path) -> dict[str, float]:
    done: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, at = line.partition("\t")
            if at:
                done.setdefault(key, float(at))
    return done


async def wait_lines(path: Path, count: int, timeout_s: float, children: list[Child]) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sink_lines(path)) < count:
        for child in children:
            child.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the anchor's sink got {len(sink_lines(path))} of {count}")
        await asyncio.sleep(0.05)


async def wait_ready(paths: list[Path], children: list[Child], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        for child in children:
            child.check()
        if time.monotonic() > deadline:
            raise TimeoutError("the anchor's relays did not join their groups in time")
        await asyncio.sleep(0.1)


async def produce(
    producer: AIOKafkaProducer,
    topic: str,
    values: Mapping[str, bytes],
    keys: list[str],
    pace: Pace | None = None,
) -> dict[str, tuple[float, float]]:
    """Each record sent as fast as the producer takes it (or when `pace` has it due); per
    record id its send call and acknowledgement (epoch s)."""
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    futures = []
    started = time.monotonic()
    for k, key in enumerate(keys):
        if pace is not None:
            await pace.wait(started, k)
        sent[key] = time.time()
        future = await producer.send(topic, values[key], key=key.encode())
        future.add_done_callback(lambda _, k=key: acked.__setitem__(k, time.time()))
        futures.append(future)
    await asyncio.gather(*futures)
    await asyncio.sleep(0)  # the last callbacks
    return {key: (sent[key], acked[key]) for key in keys}


async def run_anchor(
    setup: SideSetup,
    run: str,
    loopline: SideRun,
    warm: list[str],
    timeout_s: float,
    cpu_of: Mapping[str, Callable[[], float]],
) -> SideRun:
    """One run of the raw chain on the Loopline run's records (`warm` first, untimed)."""
    kafka = KafkaSettings(
        bootstrap_servers=setup.bootstrap, topic_prefix=f"{run}.", topic_partitions=setup.partitions
    )
    await create_spine(kafka)
    run_dir = setup.work_dir / run
    run_dir.mkdir(parents=True)
    keys = list(loopline.handed)
    wanted = set(keys) | set(warm)
    ingested, generated, judged = loopline.topics
    out = run_dir / "sink.tsv"
    hops = {
        "relay-generate": ["relay", "--source", kafka.topic(RECORDS_INGESTED), "--target",
                           kafka.topic(RECORDS_GENERATED), "--payloads",
                           str(generated.payload_file(run_dir / "generated.tsv", wanted))],
        "relay-judge": ["relay", "--source", kafka.topic(RECORDS_GENERATED), "--target",
                        kafka.topic(RECORDS_JUDGED), "--payloads",
                        str(judged.payload_file(run_dir / "judged.tsv", wanted))],
        "sink": ["sink", "--source", kafka.topic(RECORDS_JUDGED), "--out", str(out)],
    }  # fmt: skip
    children: list[Child] = []
    producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap, acks="all")
    try:
        for name, argv in hops.items():
            ready = run_dir / f"{name}.ready"
            common = ["--bootstrap", setup.bootstrap, "--group", f"{run}-{name}", "--ready"]
            children.append(
                Child(
                    name,
                    [sys.executable, str(RELAY), *argv, *common, str(ready)],
                    dict(os.environ),
                    run_dir / f"{name}.log",
                    RELAY.parent,
                )
            )
        await wait_ready([run_dir / f"{name}.ready" for name in hops], children)
        await producer.start()
        topic = kafka.topic(RECORDS_INGESTED)
        await produce(producer, topic, ingested.values, warm)
        await wait_lines(out, len(warm), timeout_s, children)
        before = {c.name: c.cpu_s() for c in children} | {k: f() for k, f in cpu_of.items()}
        handed = await produce(producer, topic, ingested.values, keys, setup.pace)
        await wait_lines(out, len(wanted), timeout_s, children)
        after = {c.name: c.cpu_s() for c in children} | {k: f() for k, f in cpu_of.items()}
    finally:
        await producer.stop()
        await stop_all(children)
    done = sink_lines(out)
    return SideRun(
        handed=handed,
        topics=await read_spine(kafka),
        done={key: done[key] for key in keys},
        cpu_ms={k: (after[k] - before[k]) * 1000 / len(keys) for k in after},
        notes=[],
    )
