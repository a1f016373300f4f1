"""Scale benchmark: the judge with 1, 2 and 4 replicas in one consumer group, against an
endpoint with a fixed latency per call, and the time a replica added mid-run takes to share.

Starts the local stack's Kafka (Tansu, in memory) on a free loopback port and, in this
process, a scripted OpenAI-compatible endpoint (`devstack.scripted_llm`) that answers every
call after `--latency-ms` (the loop benchmark's answers: a valid object of the judge's JSON
schema). Each run gets its own topics (`--partitions` of them per topic) and consumer group;
`--records` valid records of a judge-only flow (an instruction, two candidate responses) are
written to its `records.generated` first. Then N judges start as separate processes
(`python -m cli run judge`, configured by LOOPLINE_* variables only), one consumer group:
records/s from the first replica's launch to the last record on `records.judged` (the
replicas' start-up and group join included), and from the first record judged to the last
(steady). Each replica count runs `--runs` times, the order turning from round to round;
medians are shown, with the ratio to one replica and the limit: N replicas x the in-flight
calls one replica allows (the LLM client's per-endpoint limit: 8 unless `--max-in-flight`)
/ the latency.

Rebalance (`--rebalance-from N`, 0 to skip): N replicas start; once `--add-at` of the records
are judged one more is launched. Measured from its launch: its first LLM call (each replica
sends its own API key), its first record judged (its /healthz, polled every 0.1 s), and when
the group's throughput settled (the first 2 s window at 90% or more of the group's rate over
the middle of what was judged after the launch), with the longest pause of the whole group
(an eager rebalance stops every member) and the rates before and after.

Every process started is stopped by pid (SIGTERM to its process group). Loopback only.

    python benchmarks/scale/run.py [--runs 3] [--records 2000] [--latency-ms 250]
                                   [--replicas 1,2,4] [--partitions 4] [--rebalance-from 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from runs import Bench, ScaleRun, load, one_run
from topics import flow_file

import devstack as stack
from devstack.scripted_llm import ScriptedLLM
from devstack.testing import config_for_tests

sys.path.append(str(Path(__file__).resolve().parents[1] / "loop"))
sys.path.append(str(Path(__file__).resolve().parents[1] / "common"))
from processes import stop_on_sigterm, until_sigterm
from responder import respond

REPO = Path(__file__).resolve().parents[2]
CLIENT_IN_FLIGHT = 8  # OpenAICompatibleLLM's default per-endpoint limit
TARGETS = {2: 1.8, 4: 3.2}


def order(counts: list[int], runs: int) -> list[int]:
    """Every replica count once per round, the order turning by one from round to round."""
    return [counts[(k + i) % len(counts)] for k in range(runs) for i in range(len(counts))]


def median(runs: list[ScaleRun], figure: Callable[[ScaleRun], float]) -> float:
    values = [figure(r) for r in runs if not math.isnan(figure(r))]
    return statistics.median(values) if values else math.nan


def report(args: argparse.Namespace, scale: list[ScaleRun], moved: list[ScaleRun]) -> None:
    if scale:
        report_scale(args, scale)
    if moved:
        report_rebalance(args, moved)


def report_scale(args: argparse.Namespace, scale: list[ScaleRun]) -> None:
    in_flight = args.max_in_flight or CLIENT_IN_FLIGHT
    per_replica = in_flight / (args.latency_ms / 1000)
    print()
    print(
        f"judge replicas on {args.records:,} records, endpoint latency {args.latency_ms:.0f} ms "
        f"per call, {args.partitions} partitions, {in_flight} calls in flight per replica; "
        f"medians of {args.runs}"
    )
    print(
        f"{'replicas':>8}{'records/s':>11}{'x 1':>7}{'target':>8}{'limit':>8}{'x 1':>6}"
        f"{'steady':>9}{'x 1':>7}{'up s':>6}{'1st s':>7}{'CPU ms/rec':>12}{'top part.':>11}"
    )
    base = [r for r in scale if r.replicas == 1]
    one, one_steady = median(base, lambda r: r.rate), median(base, lambda r: r.steady)
    for count in args.replicas:
        mine = [r for r in scale if r.replicas == count]
        rate, steady = median(mine, lambda r: r.rate), median(mine, lambda r: r.steady)
        limit = per_replica * min(count, args.partitions)
        target = TARGETS.get(count)
        print(
            f"{count:>8}{rate:>11.1f}{rate / one:>6.2f}x"
            f"{f'{target:.1f}x' if target else '-':>8}{limit:>8.0f}{limit / per_replica:>5.1f}x"
            f"{steady:>9.1f}{steady / one_steady:>6.2f}x{median(mine, lambda r: r.up):>6.1f}"
            f"{median(mine, lambda r: r.first):>7.1f}"
            f"{median(mine, lambda r: r.cpu_ms):>12.2f}"
            f"{median(mine, lambda r: r.busiest_partition):>10.0%}"
        )
    print(
        "records/s: from the first replica's launch to the last record judged; steady: from the "
        "first record judged to the last; limit: replicas (at most one per partition) x "
        f"{in_flight} in flight / latency; up s: launch to the last replica running (in the "
        "group, partitions assigned); 1st s: launch to the first record judged; "
        "top part.: the busiest partition's share of the records"
    )
    for count in args.replicas:
        met = TARGETS.get(count)
        if met is None:
            continue
        mine = [r for r in scale if r.replicas == count]
        ratio = median(mine, lambda r: r.rate) / one
        print(
            f"{count} replicas / 1: {ratio:.2f}x (target >= {met:.1f}x: "
            f"{'met' if ratio >= met else 'NOT met'}); steady "
            f"{median(mine, lambda r: r.steady) / one_steady:.2f}x"
        )
    print()
    for k, r in enumerate(scale, 1):
        print(
            f"run {k}: {r.replicas} replica(s) {r.rate:.1f} records/s (steady {r.steady:.1f}), "
            f"up {r.up:.1f} s, first judged {r.first:.1f} s, last "
            f"{r.stamps[-1] - r.started:.1f} s; processed per replica {r.processed}; "
            f"partitions {sorted(r.partitions.values())}; endpoint max in flight "
            f"{r.max_in_flight}; CPU {r.cpu_s:.1f} s; load {r.load}"
        )


def report_rebalance(args: argparse.Namespace, moved: list[ScaleRun]) -> None:
    n = args.rebalance_from
    print()
    print(
        f"rebalance: {n} replica(s), one more launched once {args.add_at:.0%} of the records "
        f"were judged; medians of {len(moved)} (seconds from its launch)"
    )

    def settled(r: ScaleRun) -> float:
        if r.settling is None or r.settling.settled_at is None:
            return math.nan
        return r.settling.settled_at - r.added

    def figure(name: str) -> Callable[[ScaleRun], float]:
        return lambda r: getattr(r.settling, name) if r.settling else math.nan

    rows: dict[str, Callable[[ScaleRun], float]] = {
        "it runs (in the group, assigned)": lambda r: r.ready[-1] if r.ready else math.nan,
        "its first LLM call": lambda r: r.first_call,
        "its first record judged": lambda r: r.first_judged,
        f"the group reached {n + 1}/{n} of its rate": settled,
        "the group's longest pause": figure("longest_gap"),
        f"records/s before ({n} replicas, 5 s)": figure("before"),
        f"records/s expected ({n + 1} replicas)": figure("expected"),
        "records/s best 2 s after": figure("peak"),
    }
    for name, pick in rows.items():
        values = ", ".join(f"{pick(r):.1f}" for r in moved)
        print(f"  {name:<38}{median(moved, pick):>8.1f}   (runs: {values})")
    print("  (nan: never)")
    for k, r in enumerate(moved, 1):
        s = r.settling
        pause = f"{s.gap_at - r.added:.1f}" if s else "-"
        calls = "; ".join(
            f"{key} {count} calls {first - r.started:.1f}-{last - r.started:.1f} s"
            for key, (count, first, last) in r.calls.items()
        )
        print(
            f"  run {k}: added at {r.added - r.started:.1f} s, last record at "
            f"{r.stamps[-1] - r.started:.1f} s; longest pause began {pause} s after the launch; "
            f"records left per partition at the launch {list(r.left.values())}; {calls}; "
            f"load {r.load}"
        )


async def bench(
    args: argparse.Namespace, bootstrap: str, work: Path
) -> tuple[list[ScaleRun], list[ScaleRun]]:
    flows = work / "flows.yaml"
    flows.write_text(flow_file(args.max_in_flight))
    tag = uuid.uuid4().hex[:6]
    scale: list[ScaleRun] = []
    moved: list[ScaleRun] = []
    async with ScriptedLLM(responder=respond, delay_s=args.latency_ms / 1000) as llm:
        setup = Bench(
            bootstrap=bootstrap,
            llm=llm,
            flows_file=flows,
            work_dir=work,
            log_dir=args.logs or work,
            records=args.records,
            partitions=args.partitions,
            session_timeout_ms=args.session_timeout_ms,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            timeout_s=args.timeout,
            tag=tag,
        )
        plan = order(args.replicas, args.runs)
        for k, count in enumerate(plan if args.only != "rebalance" else [], 1):
            print(f"  run {k}/{len(plan)}: {count} replica(s), load {load()} ...", flush=True)
            scale.append(await one_run(setup, f"s{k}", count))
        for k in range(args.runs if args.rebalance_from and args.only != "scale" else 0):
            print(f"  rebalance run {k + 1}/{args.runs}, load {load()} ...", flush=True)
            moved.append(await one_run(setup, f"r{k}", args.rebalance_from, args.add_at))
    return scale, moved


def replica_counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",")})
    if not counts or counts[0] != 1:
        raise argparse.ArgumentTypeError("a list of replica counts with 1 in it, e.g. 1,2,4")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per replica count (and of the rebalance)"
    )
    parser.add_argument("--records", type=int, default=2000, help="records per run")
    parser.add_argument(
        "--latency-ms", type=float, default=250.0, help="the endpoint's time per call"
    )
    parser.add_argument(
        "--replicas",
        type=replica_counts,
        default=[1, 2, 4],
        help="replica counts, comma-separated, 1 among them",
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="the judge's LLM calls in flight per replica (the flow's "
        f"`max_in_flight`; default: the client's, {CLIENT_IN_FLIGHT})",
    )
    parser.add_argument(
        "--rebalance-from",
        type=int,
        default=1,
        help="replicas before one is added mid-run; 0: no rebalance runs",
    )
    parser.add_argument(
        "--add-at",
        type=float,
        default=0.25,
        help="share of the records judged when the replica is added",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=10_000,
        help="the replicas' LOOPLINE_KAFKA__SESSION_TIMEOUT_MS (the default)",
    )
    parser.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        default=3_000,
        help="the replicas' LOOPLINE_KAFKA__HEARTBEAT_INTERVAL_MS (the default)",
    )
    parser.add_argument("--only", choices=("scale", "rebalance"), help="one part only")
    parser.add_argument(
        "--logs", type=Path, help="keep the replicas' logs in this folder (default: dropped)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, s")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.partitions < 1 or args.records < 10 or args.runs < 1:
        parser.error("--partitions and --runs must be at least 1, --records at least 10")
    started = time.monotonic()
    print(f"load average (1/5 min) at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="loopline-scale-bench-") as tmp:
        config = config_for_tests(Path(tmp) / "stack", REPO / ".loopline" / "install")
        try:
            stack.up(config, progress=lambda m: None, components=["kafka"])
            scale, moved = asyncio.run(
                until_sigterm(bench(args, config.kafka_bootstrap, Path(tmp)))
            )
        finally:
            stack.down(config)
    report(args, scale, moved)
    print(f"load average (1/5 min) at the end: {load()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
