"""Export benchmark: completed records → SFT and DPO versions on disk, time and peak memory.

Contenders, each in its own process, on the same synthetic `records.completed` events (two
responses, two annotators each, generated on the fly so that no contender holds them all):

  1. loopline: the exporter's path as `loopline export --from-start` takes it: every event
     through `accept` into the flow's record store in batches of `WRITE_BATCH` (2000, as the
     service and the CLI keep them), then `export_versions` for `sft` and `dpo` in one pass
     (aggregation, format plugins, Parquet shards per bucket, manifests, card, report). Like
     the CLI, it starts the export's worker processes (`LOOPLINE_EXPORT__WORKERS`, default 2)
     while it reads the events;
  2. anchor: the same aggregation, once per record, and the same format rows built into a list
     per format, then `datasets.Dataset.from_list(rows).to_parquet(...)` for each.

Both run at 10,000 and at 100,000 records (`--records` to change the large size), the large
size `--runs` times each, alternating, with the median reported (this machine's timings vary
by 10% from run to run). Peak memory is the largest sum of proportional resident memory (PSS:
a page shared by k processes counts 1/k in each) over the contender's processes, sampled every
0.25 s from the benchmark's own process, and at least the main process's own peak RSS. Each
process's own peak is shown too, so that fixed helpers (loopline's fork server and workers,
from 20,000 records on) are told apart from growth with the record count.

Targets: loopline's time at most 1.2x the anchor's; loopline's peak memory flat as records grow.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import incremental  # noqa: E402  (after the repository is on the path)
from events import FLOW, FORMATS, events, flows_config  # noqa: E402
from memory import PeakMemory  # noqa: E402


def run_loopline(n: int, out: Path) -> dict[str, object]:
    from services.exporter.export import accept, export_versions, store_path
    from services.exporter.record_pass import warm_up
    from services.exporter.store import WRITE_BATCH, ExportStore
    from shared.events import RECORDS_COMPLETED
    from shared.flows import FlowsConfig
    from shared.settings import ExportSettings, Settings

    flows: FlowsConfig = flows_config()
    settings = Settings(stack_dir=out, export=ExportSettings(dir=out / "exports"))
    flow = flows.flows[FLOW]
    started = time.perf_counter()
    if settings.export.workers > 1:
        warm_up()  # as `loopline export --from-start` does before it reads the topics
    with ExportStore(store_path(settings, FLOW)) as store:
        batch = []
        for offset, body in enumerate(events(n)):
            kept = accept(flows, RECORDS_COMPLETED, 0, offset, body)
            assert kept is not None
            batch.append(kept[1])
            if len(batch) == WRITE_BATCH:
                store.add(batch, list(FORMATS))
                batch = []
        if batch:
            store.add(batch, list(FORMATS))
        stored = time.perf_counter()
        results = export_versions(settings, FLOW, flow, flow.export.formats, store)
        rows = {r.format: sum(r.rows.values()) for r in results}
    done = time.perf_counter()
    return {"seconds": done - started, "store_s": stored - started, "rows": rows}


def run_anchor(n: int, out: Path) -> dict[str, object]:
    from datasets import Dataset

    from services.argilla_publisher.templates.preference import PreferenceTemplate
    from services.exporter.aggregate import Questions, aggregate_completed
    from services.exporter.formats.dpo import DPOFormat
    from services.exporter.formats.sft import SFTFormat
    from shared.events import CompletedRecord

    questions = Questions.of(PreferenceTemplate())
    started = time.perf_counter()
    formats = (SFTFormat(), DPOFormat())
    built: dict[str, list[dict[str, Any]]] = {fmt.name: [] for fmt in formats}
    for body in events(n):
        agg = aggregate_completed(CompletedRecord.model_validate_json(body), questions)
        for fmt in formats:
            built[fmt.name].extend(row for _, row in fmt.rows(agg, "train"))
    for fmt in formats:
        Dataset.from_list(built[fmt.name], features=fmt.features("train")).to_parquet(
            str(out / f"{fmt.name}.parquet")
        )
    rows = {name: len(rows) for name, rows in built.items()}
    return {"seconds": time.perf_counter() - started, "rows": rows}


def child(contender: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="loopline-export-bench-") as tmp:
        run = run_loopline if contender == "loopline" else run_anchor
        result = run(n, Path(tmp))
    result["main_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


HELP = """\
Without --incremental: the 100k comparison with the `datasets` anchor (above), at --small
(default 10,000) and --records (default 100,000), --runs times at the large size.

With --incremental (see incremental.py): at --small (default 100,000) and --records (default
1,000,000) records each, the store filled, exported once, then --rounds rounds of --changes
changed records (--new of them new records, the others existing records answered again), each
followed by a new version: time and bytes written per round next to a full re-export of the
same data into a fresh directory, and peak memory per phase; --runs repeats the whole
scenario (medians shown). Scale down for a quick run: --records 100000 --small 10000.
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--incremental", action="store_true", help="versions after small changes")
    parser.add_argument("--records", type=int, help="the large size (100k; 1M incremental)")
    parser.add_argument("--small", type=int, help="the small size (10k; 100k incremental)")
    parser.add_argument(
        "--runs", "--repeat", type=int, help="runs at the large size (3; 1 incremental)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="incremental: rounds of changes")
    parser.add_argument("--changes", type=int, default=1000, help="incremental: records a round")
    parser.add_argument("--new", type=int, default=100, help="incremental: new records a round")
    parser.add_argument(
        "--buckets", type=int, help="incremental: the formats' bucket count (default: chosen)"
    )
    parser.add_argument(
        "--child", choices=["loopline", "anchor", "incremental"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if not 0 <= args.new <= args.changes:
        parser.error("--new must be between 0 and --changes")
    big, small, runs = (1_000_000, 100_000, 1) if args.incremental else (100_000, 10_000, 3)
    args.records = args.records if args.records is not None else big
    args.small = args.small if args.small is not None else small
    args.runs = args.runs if args.runs is not None else runs
    return args


def main() -> None:
    args = parse_args()
    if args.child == "incremental":
        incremental.child(args.records, args.rounds, args.changes, args.new, args.buckets)
        return
    if args.child:
        child(args.child, args.records)
        return
    if args.incremental:
        sizes = sorted({args.small, args.records})
        incremental.main(sizes, args.runs, args.rounds, args.changes, args.new, args.buckets)
        return
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n, times in ((args.small, 1), (args.records, args.runs)):
        for k in range(times):
            for contender in ("anchor", "loopline"):
                print(f"  running {contender} with {n:,} records ({k + 1}/{times}) ...", flush=True)
                runs.setdefault((contender, n), []).append(measure(contender, n))
    results = {key: median_run(found) for key, found in runs.items()}
    names = {
        "loopline": "loopline exporter (sft + dpo)",
        "anchor": "anchor Dataset.from_list+to_parquet",
    }
    print()
    print(f"{'contender':<36}{'records':>10}{'wall s':>9}{'peak MB':>9}  rows")
    for (contender, n), r in results.items():
        print(
            f"{names[contender]:<36}{n:>10,}{r['seconds']:>9.1f}{r['peak_rss_mb']:>9.0f}"
            f"  {r['rows']}"
        )
    big, small = args.records, args.small
    loopline, anchor = results["loopline", big], results["anchor", big]
    ratio = loopline["seconds"] / anchor["seconds"]
    export_only = loopline["seconds"] - loopline["store_s"]
    growth = loopline["peak_rss_mb"] / results["loopline", small]["peak_rss_mb"]
    anchor_growth = anchor["peak_rss_mb"] / results["anchor", small]["peak_rss_mb"]
    print()
    if args.runs > 1:
        pairs = zip(runs["loopline", big], runs["anchor", big], strict=True)
        each = ", ".join(f"{a['seconds'] / b['seconds']:.2f}x" for a, b in pairs)
        print(f"loopline / anchor at {big:,}, run by run: {each}")
    print(
        f"loopline at {big:,}: {loopline['store_s']:.1f} s taking the events in (validation, "
        f"record store), {export_only:.1f} s for the export pass "
        f"({export_only / anchor['seconds']:.2f}x the anchor's time)"
    )
    verdict = "met" if ratio <= 1.2 else "NOT met"
    print(
        f"loopline / anchor wall time at {big:,} (medians): {ratio:.2f}x  "
        f"(target <= 1.2x: {verdict})"
    )
    print(
        f"peak memory {small:,} → {big:,}: loopline x{growth:.2f}, anchor x{anchor_growth:.2f}"
        "  (all processes; target: loopline flat)"
    )
    for n in (small, big):
        r = results["loopline", n]
        print(
            f"  loopline at {n:,}: {r['processes']} process(es); main {r['main_rss_mb']:.0f} MB, "
            f"largest other {r['helper_mb']:.0f} MB"
        )


def median_run(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time (its other figures with it)."""
    middle = statistics.median_low(r["seconds"] for r in found)
    return next(r for r in found if r["seconds"] == middle)


def measure(contender: str, n: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", contender, "--records", str(n)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(child.pid) as memory:
        out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{contender} ({n}) failed:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(memory.figures(result["main_rss_mb"]))
    return result


if __name__ == "__main__":
    main()
