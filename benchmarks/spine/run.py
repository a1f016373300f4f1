"""Spine benchmark: records/s through ingest -> generate -> judge -> export with an instant
LLM endpoint, next to a raw aiokafka consume->produce chain over the same hops, with p50/p99
latency per hop.

Starts the local stack's Kafka (Tansu, in memory) on a free loopback port and the scripted
endpoint in a process of its own (`llm_server.py`: instant answers, a short text per
generation, a valid object of the judge's JSON schema). Then, each of `--runs` rounds:

  1. loopline: the ingester, generator, judge and exporter as four processes
     (`python -m cli run <service>`, configured by LOOPLINE_* variables only), as they are
     deployed: one process (one event loop, one GIL) each. The flow: two generations (two
     models), the multi-aspect judge, `dpo` versions every `--every-records` records or
     `--every-s` seconds after a change, no people (every judged record is accepted).
     `--records` records go to the ingester's HTTP API in batches of `--batch`, `--concurrency`
     requests at once, after `--warm` untimed ones. A record is done when the first `dpo`
     version holding it is announced on `datasets.exported`.
  2. anchor: raw aiokafka over the same three topics (named as Loopline's, under a prefix of
     their own) on the same broker: this process produces each record's bytes of
     `records.ingested`; a relay process per middle hop consumes a batch, produces each
     record's bytes of the next topic (those Loopline's generator and judge wrote for it) and
     commits once they are acknowledged; a sink process consumes the last topic (`relay.py`).
     Same keys, same partitions, same message sizes, acks=all on every producer, one process
     per hop. A record is done when the sink has it.

Hops, per record: ingest (the request sent to its answer; the anchor: the send call to its
acknowledgement), generate and judge (from the message's timestamp on one topic to its
timestamp on the next: the times the producing processes wrote them), export (from
`records.judged` to done). Records/s: from the first record handed over to the last done.
The CPU per record of every process while the records went through is shown too (the
machine's cores are shared by all of them). Every process started is stopped by pid.

    python benchmarks/spine/run.py [--runs 3] [--records 3000] [--telemetry local|off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from anchor_side import run_anchor
from children import Child
from hops import HOPS, hop_figures, records_per_s, trips
from loopline_side import Pace, SideRun, SideSetup, flow_file, run_loopline

import devstack as stack
from devstack.process import read_pid_file
from devstack.testing import config_for_tests

sys.path.append(str(Path(__file__).resolve().parents[1] / "common"))
from processes import cpu_s, stop_on_sigterm, until_sigterm

REPO = Path(__file__).resolve().parents[2]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def cpu_reader(pid: int) -> Callable[[], float]:
    return partial(cpu_s, pid)


def figures(side: SideRun) -> tuple[float, dict[str, tuple[float, float]]]:
    """Records/s and (p50, p99) ms per hop of one run."""
    ingested, generated, judged = (read.stamps for read in side.topics)
    done = trips(side.handed, (ingested, generated, judged), side.done)
    if len(done) != len(side.handed):
        raise RuntimeError(f"{len(side.handed) - len(done)} records lack a time at some hop")
    return records_per_s(done), {hop: (f.p50_ms, f.p99_ms) for hop, f in hop_figures(done).items()}


def report(args: argparse.Namespace, sides: dict[str, list[SideRun]], loads: list[str]) -> None:
    offered = f"{args.rate:g} records/s" if args.rate else "all at once"
    print()
    print(
        f"spine: {args.records:,} records per run, ingest (HTTP, batches of {args.batch}, "
        f"{args.concurrency} requests at once, {offered}) -> generate (2 calls) -> judge "
        f"(1 call) -> export (dpo versions); instant LLM; {args.partitions} partitions; "
        f"telemetry {args.telemetry}; medians of {args.runs}"
    )
    header = "".join(f"{hop + ' p50/p99':>20}" for hop in (*HOPS, "total"))
    print(f"{'contender':<34}{'records/s':>10}{header}")
    rates: dict[str, float] = {}
    names = {
        "anchor": "anchor: raw aiokafka, 3 processes",
        "loopline": "loopline: 4 services, 4 processes",
    }
    for side in ("anchor", "loopline"):
        per_run = [figures(run) for run in sides[side]]
        rates[side] = statistics.median(rate for rate, _ in per_run)
        cells = ""
        for hop in (*HOPS, "total"):
            p50 = statistics.median(hops[hop][0] for _, hops in per_run)
            p99 = statistics.median(hops[hop][1] for _, hops in per_run)
            cells += f"{f'{p50:,.0f} / {p99:,.0f}':>20}"
        print(f"{names[side]:<34}{rates[side]:>10,.0f}{cells}")
    print("latencies in ms (medians of the runs' p50 and p99)")
    print(f"loopline / anchor records/s: {rates['loopline'] / rates['anchor']:.3f}")
    sizes = [statistics.median(read.sizes) for read in sides["loopline"][0].topics]
    print(
        "message sizes (median bytes, the same on both sides): records.ingested "
        f"{sizes[0]:,.0f}, records.generated {sizes[1]:,.0f}, records.judged {sizes[2]:,.0f}"
    )
    for side in ("loopline", "anchor"):
        processes = sides[side][0].cpu_ms
        cpu = ", ".join(
            f"{name} {statistics.median(r.cpu_ms[name] for r in sides[side]):.2f}"
            for name in processes
        )
        print(f"CPU ms per record, {side}: {cpu}")
    print()
    for k, load_line in enumerate(loads, 1):
        rate_l, hops_l = figures(sides["loopline"][k - 1])
        rate_a, _ = figures(sides["anchor"][k - 1])
        notes = "; ".join(sides["loopline"][k - 1].notes)
        total = hops_l["total"]
        print(
            f"run {k}: loopline {rate_l:,.0f} records/s (total p50 {total[0]:,.0f} ms, p99 "
            f"{total[1]:,.0f} ms; {notes}), anchor {rate_a:,.0f} records/s; load {load_line}"
        )


async def bench(
    args: argparse.Namespace, config: stack.StackConfig, work: Path, llm: Child, llm_url: str
) -> tuple[dict[str, list[SideRun]], list[str]]:
    flows = work / "flows.yaml"
    flows.write_text(flow_file(args.every_records, args.every_s))
    setup = SideSetup(
        bootstrap=config.kafka_bootstrap,
        llm_url=llm_url,
        flows_file=flows,
        work_dir=work,
        partitions=args.partitions,
        telemetry=args.telemetry == "local",
        batch=args.batch,
        concurrency=args.concurrency,
        pace=Pace(args.rate, args.batch) if args.rate > 0 else None,
        profile=args.profile,
    )
    kafka_pid = read_pid_file(config.run_dir / "kafka.pid")
    cpu_of: dict[str, Callable[[], float]] = {"this process": cpu_reader(os.getpid())}
    if kafka_pid is not None:
        cpu_of["kafka"] = cpu_reader(kafka_pid.pid)
    tag = uuid.uuid4().hex[:6]
    sides: dict[str, list[SideRun]] = {"loopline": [], "anchor": []}
    loads = []
    for k in range(1, args.runs + 1):
        print(f"  run {k}/{args.runs}: loopline, load {load()} ...", flush=True)
        run = f"spine-{tag}-l{k}"
        ours = await run_loopline(
            setup, run, args.records, args.warm, args.timeout, {**cpu_of, "llm endpoint": llm.cpu_s}
        )
        sides["loopline"].append(ours)
        print(f"  run {k}/{args.runs}: anchor, load {load()} ...", flush=True)
        warm = [f"{run}-warm-{i:03d}" for i in range(args.warm)]
        sides["anchor"].append(
            await run_anchor(setup, f"spine-{tag}-a{k}", ours, warm, args.timeout, cpu_of)
        )
        loads.append(load())
    return sides, loads


def start_llm(work: Path) -> tuple[Child, str]:
    """The instant endpoint's process, and its base URL (the first line it prints)."""
    child = Child(
        "llm",
        [sys.executable, str(Path(__file__).resolve().parent / "llm_server.py")],
        dict(os.environ),
        work / "llm.log",
        REPO,
        stdout=subprocess.PIPE,
    )
    assert child.process.stdout is not None
    url = child.process.stdout.readline().decode().strip()
    if not url.startswith("http://127.0.0.1:"):
        raise RuntimeError(f"the scripted endpoint did not start; see {child.log_path}")
    return child, url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="rounds (loopline, then anchor)")
    parser.add_argument("--records", type=int, default=3000, help="timed records per run")
    parser.add_argument("--warm", type=int, default=20, help="untimed records first")
    parser.add_argument("--batch", type=int, default=100, help="records per ingest request")
    parser.add_argument("--concurrency", type=int, default=4, help="ingest requests at once")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="records/s offered, a batch at a time, on both sides (default 0: all at once)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument("--every-records", type=int, default=1000, help="export trigger")
    parser.add_argument("--every-s", type=float, default=1.0, help="export trigger")
    parser.add_argument(
        "--telemetry",
        choices=("local", "off"),
        default="local",
        help="local: the services' default without an OTLP endpoint (spans and metrics made, "
        "nothing exported); off: LOOPLINE_TELEMETRY__ENABLED=false",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each service under cProfile, its profile written into this folder",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per side and run, s")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.runs < 1 or args.records < 1 or args.warm < 1:
        parser.error("--runs, --records and --warm must be at least 1")
    started = time.monotonic()
    print(f"load average (1/5 min) at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="loopline-spine-bench-") as tmp:
        work = Path(tmp)
        config = config_for_tests(work / "stack", REPO / ".loopline" / "install")
        llm: Child | None = None
        try:
            stack.up(config, progress=lambda m: None, components=["kafka"])
            llm, url = start_llm(work)
            sides, loads = asyncio.run(until_sigterm(bench(args, config, work, llm, url)))
        finally:
            if llm is not None:
                asyncio.run(llm.stop())
            stack.down(config)
    report(args, sides, loads)
    print(f"load average (1/5 min) at the end: {load()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
