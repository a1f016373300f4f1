"""Loop benchmark: the whole loop, ingest to export, next to the notebooks' way of working.

Starts the local stack's Kafka (Tansu, in memory) and Argilla (with its search engine and
worker) on free loopback ports, and a scripted, instant OpenAI-compatible endpoint in this
process (`devstack.scripted_llm`: short texts for generations, a valid object for the
judge's JSON schema). Then, in one run on the same Argilla:

  1. loopline: the six services in this process with the shipped `generations-to-argilla`
     flow (two generations, the multi-aspect judge, the `preference` template, `dpo` export
     every `--every-records` records or `--every-s` seconds after a change) and two `agree`
     bot annotators answering as records arrive. `--records` records go to the ingester's
     HTTP API in batches of `--batch` (all at once, or `--rate` records/s). Measured: records/s
     from the first ingest request to the last record's row in a `dpo` version, and p50/p99
     of each record's time from its ingest request to the first version holding its row
     (read from the versions' Parquet files: `record_id` is a column);
  2. anchor: the same judged records (read back from `records.judged`) through the argilla
     SDK's `dataset.records.log(...)`, the same bots through the same REST path, then
     `dataset.records` read back and a `datasets.Dataset` of DPO rows built from them.

Loopline runs `--loop-runs` times with telemetry on and as often with it off (`--telemetry
both`, the default; alternating: off, on; on, off; ...), the anchor `--anchor-runs` times, in
between; medians are shown, and telemetry's on / off ratio of records/s, of the time until
every record was judged (the part of the loop that is Loopline's alone), and of this process's
CPU seconds (the six services, the bots and the scripted LLM). On is production's telemetry:
spans exported over OTLP/HTTP to a minimal receiver in its own process
(`benchmarks/ingest/otlp_sink.py`), the brokers' metrics middlewares, JSON logs at INFO (into a
file per run); off is `LOOPLINE_TELEMETRY__ENABLED=false` with the same logs. Per run: when
each stage held its first, half and all records, the bots' Argilla call times, the CPU seconds
of each server and of other people's processes (the machine is shared), the spans exported,
and the webhook deliveries Argilla's worker still had queued. Before each run the
worker's queue is drained (untimed), and the collector's webhook is deleted after each
Loopline run. Every process started is stopped by pid.

    python benchmarks/loop/run.py [--records 500] [--loop-runs 1] [--anchor-runs 3]
                                  [--telemetry both|on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import argilla as rg
from anchor import AnchorResult, run_anchor
from argilla_jobs import drain
from cpu import CpuMeter
from loop_side import Endpoints, LoopOptions, LoopResult, judged_records, run_loop
from responder import respond
from telemetry_modes import LogFile, OtlpSink, SinkStats, compare, modes, settings_for

import devstack as stack
from devstack.scripted_llm import ScriptedLLM
from devstack.testing import config_for_tests, free_port
from shared.settings import ArgillaSettings, FeedbackSettings, KafkaSettings

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("kafka", "search", "argilla", "argilla-worker")
SETTLE_S = 2.0  # between runs, after Argilla's worker has no job left


def judged_all(r: LoopResult) -> float | None:
    """Seconds after the first ingest until every record was judged."""
    judged = r.stages.get("judged")
    return judged[2] if judged is not None else None


def process_cpu_ms(r: LoopResult) -> float | None:
    """This process's CPU milliseconds per record (the services, bots, scripted LLM)."""
    return r.cpu.parts["this process"] * 1000 / r.records if r.cpu is not None else None


FIGURES: dict[str, Callable[[LoopResult], float | None]] = {
    "records/s (ingest .. dpo version)": lambda r: r.rate,
    "total s": lambda r: r.seconds,
    "p50 s": lambda r: r.p50,
    "s until every record was judged": judged_all,
    "this process's CPU ms per record": process_cpu_ms,
    "  of which span exporters' threads'": lambda r: r.exporter_cpu_s * 1000 / r.records,
}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def drop_webhooks(argilla: ArgillaSettings, port: int) -> int:
    """Delete the collector's Argilla webhook once its run is over (the anchor has none; the
    next run's collector registers it again)."""
    client = rg.Argilla(api_url=argilla.api_url, api_key=argilla.api_key_value())
    dropped = 0
    try:
        for hook in client.webhooks.list():
            if f":{port}/" in hook.url:
                hook.delete()
                dropped += 1
    finally:
        client.http_client.close()
    return dropped


async def bench(
    config: stack.StackConfig, args: argparse.Namespace, workdir: Path, tag: str, logs: LogFile
) -> tuple[list[LoopResult], list[AnchorResult], list[str]]:
    options = LoopOptions(
        records=args.records,
        every_records=args.every_records,
        every_s=args.every_s,
        batch=args.batch,
        rate=args.rate,
        bot_rate=args.bot_rate,
        reconcile_s=args.reconcile_s,
        timeout_s=args.timeout,
    )
    argilla = ArgillaSettings(
        api_url=config.argilla_url,
        api_key=config.argilla_api_key,
        workspace=config.argilla_workspace,
    )
    meter = CpuMeter(config)
    loops: list[LoopResult] = []
    anchors: list[AnchorResult] = []
    notes: list[str] = []
    loop_modes = modes(args.telemetry, args.loop_runs)
    with OtlpSink() as sink:
        async with ScriptedLLM(responder=respond) as llm:
            endpoints = Endpoints(
                kafka=config.kafka_bootstrap,
                argilla=argilla,
                llm_url=llm.base_url,
                feedback_port=free_port(),
                group_prefix=f"bench-loop-{tag}",
                redis=(config.host, config.ports.redis),
            )
            judged = None
            for k in range(max(len(loop_modes), args.anchor_runs)):
                if k < len(loop_modes):
                    mode = loop_modes[k]
                    await drain(*endpoints.redis)
                    run = f"{tag}-{k + 1}"
                    before = load()
                    print(
                        f"  loopline run {k + 1}/{len(loop_modes)} (telemetry {mode}) ...",
                        flush=True,
                    )
                    log_file = workdir / f"services-{run}-{mode}.log"
                    logs.into(log_file)
                    exported = await asyncio.to_thread(sink.stats)
                    result = await run_loop(
                        endpoints, workdir, run, options, meter, settings_for(mode, sink)
                    )
                    exported = await asyncio.to_thread(sink.stats) - exported
                    loops.append(
                        dataclasses.replace(
                            result, mode=mode, sink=exported, log_lines=logs.lines(log_file)
                        )
                    )
                    notes.append(f"loopline run {k + 1}: load average {before} -> {load()}")
                    await asyncio.to_thread(drop_webhooks, argilla, endpoints.feedback_port)
                    if judged is None:
                        kafka = KafkaSettings(bootstrap_servers=endpoints.kafka)
                        judged = await judged_records(kafka, f"loop-{run}", args.records)
                    await asyncio.sleep(SETTLE_S)
                if k < args.anchor_runs:
                    if judged is None:
                        raise SystemExit("the anchor needs one loopline run first (its records)")
                    await drain(*endpoints.redis)
                    before = load()
                    print(f"  anchor run {k + 1}/{args.anchor_runs} ...", flush=True)
                    run = f"{tag}-{k + 1}"
                    anchors.append(await run_anchor(argilla, judged, run, args.bot_rate, meter))
                    notes.append(f"anchor run {k + 1}: load average {before} -> {load()}")
                    await asyncio.sleep(SETTLE_S)
            notes.append(f"scripted LLM: {len(llm.requests)} requests answered")
    return loops, anchors, notes


def report(
    args: argparse.Namespace,
    loops: list[LoopResult],
    anchors: list[AnchorResult],
    notes: list[str],
) -> None:
    print()
    print(f"records {args.records}, {os.cpu_count()} cores")
    print(f"{'contender':<44}{'runs':>5}{'total s':>9}{'records/s':>11}{'p50 s':>8}{'p99 s':>8}")
    a_total = statistics.median([a.seconds for a in anchors]) if anchors else float("nan")
    print(
        f"{'anchor: SDK log, bots, read back, Dataset':<44}{len(anchors):>5}{a_total:>9.1f}"
        f"{args.records / a_total:>11.1f}{'-':>8}{'-':>8}"
    )
    totals: dict[str, float] = {}
    for mode in ("on", "off"):
        mine = [r for r in loops if r.mode == mode]
        if not mine:
            continue
        totals[mode] = l_total = statistics.median([r.seconds for r in mine])
        p50 = statistics.median([r.p50 for r in mine])
        p99 = statistics.median([r.percentile(99) for r in mine])
        print(
            f"{f'loopline: ingest .. dpo, telemetry {mode}':<44}{len(mine):>5}"
            f"{l_total:>9.1f}{args.records / l_total:>11.1f}{p50:>8.1f}{p99:>8.1f}"
        )
    l_total = totals.get("on", totals.get("off", float("nan")))
    print(f"loopline / anchor records/s: {a_total / l_total:.2f}x (telemetry on, when it ran)")
    if len(totals) == 2:
        print()
        print("telemetry on / off:")
        for line in compare(loops, FIGURES):
            print(f"  {line}")
    print()
    for k, r in enumerate(loops, 1):
        stages = ", ".join(
            f"{name} {a:.1f}/{b:.1f}/{c:.1f}" for name, (a, b, c) in r.stages.items()
        )
        print(
            f"loopline run {k} (telemetry {r.mode}): {r.seconds:.1f} s, {r.rate:.1f} records/s, "
            f"p50 {r.p50:.1f} s, "
            f"p90 {r.percentile(90):.1f} s, p99 {r.percentile(99):.1f} s, max "
            f"{max(r.latencies):.1f} s; {len(r.versions)} dpo versions "
            f"(last {r.versions[-1].rows} rows)"
        )
        if args.verbose:
            for v in r.versions:
                print(
                    f"    dpo v{v.number}: {v.rows} rows ({v.new} new), exported at "
                    f"{v.exported_at:.1f} s, read at {v.seen_at:.1f} s"
                )
        print(
            f"  stages reached by the first/half/all records (s after the first ingest): {stages}"
        )
        print(f"  bots: {r.bots}")
        exported = r.sink or SinkStats()
        print(
            f"  telemetry {r.mode}: {exported.spans / r.records:.1f} spans per record exported "
            f"({exported.requests} OTLP requests, {exported.bytes / 1024:,.0f} KB); "
            f"{r.log_lines} JSON log lines"
        )
        jobs, drained = r.backlog
        print(f"  Argilla worker jobs left at the end: {jobs} (delivered in {drained:.0f} s more)")
        if r.cpu is not None:
            print(f"  {r.cpu.line()}")
    for k, a in enumerate(anchors, 1):
        steps = ", ".join(f"{name} {s:.1f}" for name, s in a.steps.items())
        print(f"anchor run {k}: {a.seconds:.1f} s, {a.rate:.1f} records/s, {a.rows} rows ({steps})")
        print(f"  bots: {a.bots}")
        if a.cpu is not None:
            print(f"  {a.cpu.line()}")
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--loop-runs", type=int, default=1, help="per telemetry mode")
    parser.add_argument(
        "--telemetry",
        choices=("both", "on", "off"),
        default="both",
        help="the services' telemetry: on and off in alternate runs (both), or one of them",
    )
    parser.add_argument("--anchor-runs", type=int, default=3)
    parser.add_argument("--every-records", type=int, default=20, help="export trigger")
    parser.add_argument("--every-s", type=float, default=1.0, help="export trigger")
    parser.add_argument("--batch", type=int, default=100, help="records per ingest request")
    parser.add_argument("--rate", type=float, default=0.0, help="records/s offered; 0: at once")
    parser.add_argument(
        "--bot-rate",
        type=float,
        default=None,
        help="answers/s of the two bots together, in bulks of that size (default: bulks of 100)",
    )
    parser.add_argument(
        "--reconcile-s",
        type=float,
        default=FeedbackSettings().reconcile_interval_s,
        help="the feedback collector's reconciliation interval (default: the service's)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per loopline run, s")
    parser.add_argument("--verbose", action="store_true", help="every dpo version's figures")
    args = parser.parse_args()
    if args.loop_runs < 1 or args.anchor_runs < 0 or args.records < 1:
        parser.error("--records and --loop-runs must be at least 1, --anchor-runs at least 0")
    tag = uuid.uuid4().hex[:6]
    started = time.monotonic()
    print(f"load average (1/5 min) at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="loopline-loop-bench-") as tmp:
        config = config_for_tests(Path(tmp) / "stack", REPO / ".loopline" / "install")
        # The services' JSON lines into a file per run; on the console warnings and the
        # collector's reconciliation passes (how many completions the webhooks had missed).
        logs = LogFile([config.argilla_api_key.get_secret_value()])
        try:
            stack.up(config, components=SERVERS)  # no LLM server: the scripted one
            loops, anchors, notes = asyncio.run(bench(config, args, Path(tmp), tag, logs))
        finally:
            stack.down(config)
    report(args, loops, anchors, notes)
    print(f"load average (1/5 min) at the end: {load()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
