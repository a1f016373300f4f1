"""The spine benchmark's anchor hops: raw aiokafka, one process per hop.

    relay: consume `--source` in group `--group`, and for each message produce to `--target`
           the payload `--payloads` holds for its key (the bytes Loopline's stage wrote for
           that record, so every hop carries the same sizes), keyed the same; once a batch's
           sends are acknowledged (acks=all), commit its offsets. Until SIGTERM.
    sink:  consume `--source` in group `--group`; append `<key>\t<epoch seconds>` for each
           record the first time it arrives to `--out` (flushed per batch). Until SIGTERM.

Both touch `<--ready>` once their group has given them partitions. Loopback only.

    python benchmarks/spine/relay.py relay --bootstrap HOST:PORT --source T1 --target T2 \
        --payloads FILE --group G --ready FILE
    python benchmarks/spine/relay.py sink --bootstrap HOST:PORT --source T3 --group G \
        --out FILE --ready FILE
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

SESSION_TIMEOUT_MS = 10_000  # the services' defaults (KafkaSettings)
HEARTBEAT_INTERVAL_MS = 3_000


def read_payloads(path: Path) -> dict[bytes, bytes]:
    """`<key>\t<value>` lines (values are JSON: no raw newline or tab in them)."""
    payloads: dict[bytes, bytes] = {}
    for line in path.read_bytes().splitlines():
        key, _, value = line.partition(b"\t")
        payloads[key] = value
    return payloads


class Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self.path = path

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.path.touch()


def consumer(args: argparse.Namespace) -> AIOKafkaConsumer:
    made = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    made.subscribe([args.source], listener=Ready(args.ready))
    return made


async def relay(args: argparse.Namespace, stop: asyncio.Event) -> None:
    payloads = read_payloads(args.payloads)
    source = consumer(args)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    await producer.start()
    await source.start()
    try:
        while not stop.is_set():
            batches = await source.getmany(timeout_ms=100)
            sends = [
                await producer.send(args.target, payloads[message.key], key=message.key)
                for messages in batches.values()
                for message in messages
            ]
            if sends:
                await asyncio.gather(*sends)
                await source.commit()
    finally:
        await source.stop()
        await producer.stop()


async def sink(args: argparse.Namespace, stop: asyncio.Event) -> None:
    source = consumer(args)
    await source.start()
    seen: set[bytes] = set()
    try:
        with args.out.open("a") as out:
            while not stop.is_set():
                batches = await source.getmany(timeout_ms=100)
                now = time.time()
                for messages in batches.values():
                    for message in messages:
                        if message.key not in seen:
                            seen.add(message.key)
                            out.write(f"{message.key.decode()}\t{now:.6f}\n")
                out.flush()
                if batches:
                    await source.commit()
    finally:
        await source.stop()


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await (relay if args.mode == "relay" else sink)(args, stop)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", choices=("relay", "sink"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True, help="the topic consumed")
    parser.add_argument("--group", required=True, help="the consumer group")
    parser.add_argument("--ready", type=Path, required=True, help="touched once assigned")
    parser.add_argument("--target", help="relay: the topic produced to")
    parser.add_argument("--payloads", type=Path, help="relay: <key>\\t<value> lines")
    parser.add_argument("--out", type=Path, help="sink: where arrival times go")
    args = parser.parse_args()
    if args.mode == "relay" and (args.target is None or args.payloads is None):
        parser.error("relay needs --target and --payloads")
    if args.mode == "sink" and args.out is None:
        parser.error("sink needs --out")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
