"""Export benchmark: completed records → SFT and DPO versions on disk, time and peak memory.

Contenders, each in its own process, on the same synthetic `records.completed` events (two
responses, two annotators each, generated on the fly so that no contender holds them all):

  1. loopline: the exporter's path as `loopline export --from-start` takes it: every event
     through `accept` into the flow's record store in batches of `WRITE_BATCH` (2000, as the
     service and the CLI keep them), then `export_versions` for `sft` and `dpo` in one pass
     (aggregation, format plugins, Parquet + Arrow shards, manifests, report). Like the CLI,
     it starts the export's worker processes (`LOOPLINE_EXPORT__WORKERS`, default 2) while it
     reads the events;
  2. anchor: the same aggregation, once per record, and the same format rows built into a list
     per format, then `datasets.Dataset.from_list(rows).to_parquet(...)` for each.

Both run at 10,000 and at 100,000 records (`--records` to change the large size), the large
size `--repeat` times each, alternating, with the median reported (this machine's timings vary
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
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

FLOW = "bench"
FORMATS = ("sft", "dpo")


def events(n: int) -> Iterator[bytes]:
    """n completed-record events, deterministic, one at a time."""
    from devstack.sample_records import completed, preference, record, response

    for i in range(n):
        rec = record(
            instruction=f"Write a function that returns the {i}th prime number, with tests.",
            responses=(
                (f"def prime(n):  # answer {i}\n    ..." + " sieve" * 20, "model-a"),
                (f"Use a loop. ({i})" + " maybe" * 10, "model-b"),
            ),
            flow=FLOW,
        )
        answers = (
            response(rec, "ann1", preference(5 - i % 2, 2)),
            response(rec, "ann2", preference(4, 1 + i % 3, best=1 if i % 7 else 2)),
        )
        yield completed(rec, *answers).to_bytes()


def flows_config() -> Any:
    from shared.flows import FlowsConfig

    return FlowsConfig.model_validate(
        {
            "flows": {
                FLOW: {
                    "publish": {"plugin": "preference"},
                    "export": {"formats": [{"plugin": f} for f in FORMATS], "every_s": 0},
                }
            }
        }
    )


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


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_mb(pid: int) -> float:
    """Proportional resident memory of a process: shared pages split among their sharers."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


class PeakMemory:
    """Peak memory of a process and the processes it starts, sampled from outside (a thread of
    the benchmark, not of the contender): the largest sum over all of them, and the largest of
    each."""

    def __init__(self, root: int, every_s: float = 0.25) -> None:
        self.root = root
        self.total = 0.0
        self.each: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            now = {pid: pss_mb(pid) for pid in process_tree(self.root)}
            self.total = max(self.total, sum(now.values()))
            for pid, mb in now.items():
                self.each[pid] = max(self.each.get(pid, 0.0), mb)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, main_rss_mb: float) -> dict[str, float]:
        helpers = [mb for pid, mb in self.each.items() if pid != self.root]
        return {
            "peak_rss_mb": max(self.total, main_rss_mb),  # all processes
            "main_rss_mb": main_rss_mb,
            "helper_mb": max(helpers, default=0.0),  # the largest other process
            "processes": len(self.each),
        }


def child(contender: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="loopline-export-bench-") as tmp:
        run = run_loopline if contender == "loopline" else run_anchor
        result = run(n, Path(tmp))
    result["main_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="the large size")
    parser.add_argument("--small", type=int, default=10_000, help="the small size")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each at the large size")
    parser.add_argument("--child", choices=["loopline", "anchor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.records)
        return
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n, times in ((args.small, 1), (args.records, args.repeat)):
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
    if args.repeat > 1:
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
