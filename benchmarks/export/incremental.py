"""`run.py --incremental`: what a version costs once the dataset is large.

One child process per size (default 100,000 and 1,000,000 records), its memory sampled from
outside, phase by phase (`memory.PeakMemory`):

  fill   the records put into the flow's record store, 2,000 to a transaction (events built
         and upserted directly, not parsed again: the fill is set-up, not measured);
  first  the first export: `export_versions` for `sft` and `dpo`, one version each;
  rounds `--rounds` times: 1,000 changed records (by default 900 existing records answered
         again, picked at random, and 100 new records) taken in as the service takes them
         (`accept` + `ExportStore.add`), then `export_versions`: a new version of each format;
  full   a full re-export of the same data, the old way: the same store exported into a fresh,
         empty export directory.

For each export: wall time and the bytes written under the export directory (files created
or rewritten, by path and inode/mtime/size: `written`). Targets: a round's version at most 3%
of the full export's time and bytes; peak memory flat from the small size to the large one.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from events import FLOW, FORMATS, completed_event, flows_config, round_events
from memory import PeakMemory
from written import snapshot, written

PHASE = "@phase "  # a line of the child's stdout: the phase it starts
PHASES = ("fill", "first", "rounds", "full")
TARGET = 0.03


def _phase(name: str) -> None:
    print(f"{PHASE}{name}", flush=True)


def _fill(store: Any, n: int) -> None:
    from services.exporter.store import HUMAN, WRITE_BATCH, StoredEvent
    from shared.events import RECORDS_COMPLETED

    batch: list[StoredEvent] = []
    for i in range(n):
        event = completed_event(i)
        at = event.completed_at.isoformat()
        body = event.to_bytes()
        batch.append(StoredEvent(event.record_id, HUMAN, at, RECORDS_COMPLETED, 0, i, body))
        if len(batch) == WRITE_BATCH:
            store.add(batch, list(FORMATS))
            batch = []
    if batch:
        store.add(batch, list(FORMATS))


def _export(settings: Any, flow: Any, store: Any, root: Path) -> dict[str, Any]:
    """One `export_versions`, timed, with what it wrote under `root`."""
    from services.exporter.export import export_versions

    root.mkdir(parents=True, exist_ok=True)
    before = snapshot(root)
    started = time.perf_counter()
    results = export_versions(settings, FLOW, flow, flow.export.formats, store)
    seconds = time.perf_counter() - started
    wrote = written(before, snapshot(root))
    return {
        "seconds": seconds,
        "bytes": wrote.bytes,
        "files": wrote.files,
        "parquet": wrote.parquet,
        "total_bytes": wrote.total_bytes,
        "versions": {r.format: r.version for r in results if r.created},
        # What the export read (its changed buckets' records), where the exporter says so.
        "records_read": max((getattr(r, "records_read", -1) for r in results), default=-1),
        "rows": {r.format: sum(r.rows.values()) for r in results},
    }


def _buckets(settings: Any) -> int | None:
    """The bucket count of the first format's latest version (None: no buckets, before 16)."""
    from services.exporter.storage import versions_of

    manifest = versions_of(settings, FLOW, FORMATS[0]).latest_manifest()
    found = manifest.get("buckets") if manifest is not None else None
    return int(found) if found is not None else None


def _settings(root: Path, exports: Path, buckets: int | None) -> Any:
    from shared.settings import ExportSettings, Settings

    options: dict[str, Any] = {"dir": exports, "store_dir": root / "stores"}
    if buckets is not None:
        options["buckets"] = buckets
    return Settings(stack_dir=root, export=ExportSettings(**options))


def child(n: int, rounds: int, changes: int, new: int, buckets: int | None) -> None:
    """The whole scenario at one size; prints phases as it goes, then its figures (JSON)."""
    from services.exporter.export import accept
    from services.exporter.record_pass import warm_up
    from services.exporter.store import ExportStore
    from shared.events import RECORDS_COMPLETED

    flows = flows_config()
    flow = flows.flows[FLOW]
    result: dict[str, Any] = {"records": n}
    with tempfile.TemporaryDirectory(prefix="loopline-export-incremental-") as tmp:
        root = Path(tmp)
        exports, fresh = root / "exports", root / "full"
        settings = _settings(root, exports, buckets)
        warm_up()  # the export's worker processes, as `loopline export --from-start` does
        _phase("fill")
        started = time.perf_counter()
        with ExportStore(root / "stores" / FLOW / "records.sqlite") as store:
            _fill(store, n)
            result["fill_s"] = time.perf_counter() - started
            result["store_mb"] = store.path.stat().st_size / 1e6
            _phase("first")
            result["first"] = _export(settings, flow, store, exports)
            result["buckets"] = _buckets(settings)
            _phase("rounds")
            offset, done = n, []
            for round_no in range(1, rounds + 1):
                started = time.perf_counter()
                batch = []
                for event in round_events(n, round_no, changes, new):
                    kept = accept(flows, RECORDS_COMPLETED, 0, offset, event.to_bytes())
                    assert kept is not None
                    batch.append(kept[1])
                    offset += 1
                changed = store.add(batch, list(FORMATS))
                taken = time.perf_counter() - started
                done.append({**_export(settings, flow, store, exports), "take_s": taken})
                done[-1]["changed"] = changed
            result["rounds"] = done
            _phase("full")
            result["full"] = _export(_settings(root, fresh, buckets), flow, store, fresh)
        shutil.rmtree(root, ignore_errors=True)
    result["main_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


def measure(n: int, rounds: int, changes: int, new: int, buckets: int | None) -> dict[str, Any]:
    """Run the child at size `n`, sampling its memory by phase."""
    command = [
        sys.executable,
        str(Path(__file__).with_name("run.py")),
        *("--child", "incremental", "--records", str(n), "--rounds", str(rounds)),
        *("--changes", str(changes), "--new", str(new)),
        *(("--buckets", str(buckets)) if buckets is not None else ()),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = ""
    with PeakMemory(proc.pid) as memory:
        for line in proc.stdout:
            if line.startswith(PHASE):
                memory.phase = line[len(PHASE) :].strip()
                print(f"    {n:,} records: {memory.phase} ...", flush=True)
            elif line.strip():
                last = line
        proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the incremental run at {n:,} records failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(last)
    result["peak"] = {
        name: {"pss_mb": p.pss_mb, "rss_mb": p.rss_mb} for name, p in memory.phases.items() if name
    }
    result["peak_all"] = {"pss_mb": memory.total.pss_mb, "rss_mb": memory.total.rss_mb}
    result["processes"] = len(memory.total.each)
    return result


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def report(by_size: dict[int, list[dict[str, Any]]], changes: int, new: int) -> None:
    """Per size: the first export, each round, the full re-export (medians over runs), the
    ratios against the targets; then peak memory per phase and size."""
    for n, runs in by_size.items():
        rounds = [r for run in runs for r in run["rounds"]]
        full = _median(run["full"] for run in runs)
        first = _median(run["first"] for run in runs)
        print()
        print(
            f"{n:,} records ({len(runs)} run(s)); rounds of {changes:,} changed records "
            f"({changes - new:,} answered again, {new:,} new), {len(rounds)} in all"
        )
        fill = statistics.median(r["fill_s"] for r in runs)
        print(f"  fill: {fill:.1f} s (set-up); buckets per format: {runs[0]['buckets']}")
        print(
            f"  {'export':<30}{'time s':>8}{'MB written':>12}{'files':>7}{'parquet':>8}"
            f"{'read':>10}{'MB in dir':>11}"
        )
        print(f"  {'first (v1)':<30}{_row(first)}")
        for k, r in enumerate(runs[0]["rounds"], start=1):
            made = max(r["versions"].values(), default=0)
            print(f"  {f'round {k} (v{made})':<30}{_row(r)}")
        middle = {
            "seconds": statistics.median(r["seconds"] for r in rounds),
            "bytes": statistics.median(r["bytes"] for r in rounds),
            "files": statistics.median(r["files"] for r in rounds),
            "parquet": statistics.median(r["parquet"] for r in rounds),
            "records_read": statistics.median(r["records_read"] for r in rounds),
            "total_bytes": rounds[-1]["total_bytes"],
        }
        print(f"  {'round, median':<30}{_row(middle)}")
        print(f"  {'full re-export (fresh dir)':<30}{_row(full)}")
        for what, key in (("time", "seconds"), ("bytes", "bytes")):
            share = middle[key] / full[key] if full[key] else float("nan")
            verdict = "met" if share <= TARGET else "NOT met"
            print(
                f"  a round's {what} / the full re-export's: {share:.1%}"
                f"  (target <= {TARGET:.0%}: {verdict})"
            )
        take = statistics.median(r["take_s"] for r in rounds)
        print(f"  taking a round's events in (accept + store): {take:.2f} s (median)")
    print()
    print("peak memory, all processes of the run (MB: PSS sum / RSS sum), by phase")
    print(f"  {'records':>10}" + "".join(f"{p:>16}" for p in PHASES))
    for n, runs in by_size.items():
        cells = []
        for name in PHASES:
            pss = max(run["peak"].get(name, {}).get("pss_mb", 0.0) for run in runs)
            rss = max(run["peak"].get(name, {}).get("rss_mb", 0.0) for run in runs)
            cells.append(f"{pss:>7.0f} / {rss:<6.0f}")
        print(f"  {n:>10,}" + "".join(f"{c:>16}" for c in cells))
    sizes = sorted(by_size)
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        for name in ("first", "rounds", "full"):
            a = max(run["peak"].get(name, {}).get("pss_mb", 0.0) for run in by_size[small])
            b = max(run["peak"].get(name, {}).get("pss_mb", 0.0) for run in by_size[big])
            print(f"  {name}: x{b / a:.2f} from {small:,} to {big:,} (target: flat)")


def _row(r: dict[str, Any]) -> str:
    read = f"{int(r['records_read']):,}" if r["records_read"] >= 0 else "-"
    return (
        f"{r['seconds']:>8.2f}{_mb(r['bytes']):>12}{int(r['files']):>7}{int(r['parquet']):>8}"
        f"{read:>10}{_mb(r['total_bytes']):>11}"
    )


def _median(found: Any) -> dict[str, Any]:
    """The export of median wall time (its other figures with it)."""
    runs = list(found)
    middle = statistics.median_low(r["seconds"] for r in runs)
    result: dict[str, Any] = next(r for r in runs if r["seconds"] == middle)
    return result


def main(
    sizes: list[int], runs: int, rounds: int, changes: int, new: int, buckets: int | None
) -> None:
    by_size: dict[int, list[dict[str, Any]]] = {}
    for k in range(runs):
        for n in sizes:
            print(f"  incremental run {k + 1}/{runs} at {n:,} records ...", flush=True)
            by_size.setdefault(n, []).append(measure(n, rounds, changes, new, buckets))
    report(by_size, changes, new)
