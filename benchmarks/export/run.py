"""Export benchmark: completed records → SFT and DPO versions on disk, time and peak memory.

Contenders, each in its own process (peak RSS is the process's own), on the same synthetic
`records.completed` events (two responses, two annotators each, generated on the fly so that
no contender holds them all):

  1. loopline: the exporter's path: every event through `accept` into the flow's record store
     in batches of 500 (as the service keeps them), then `export_versions` for `sft` and `dpo`
     in one pass (aggregation, format plugins, Parquet + Arrow shards, manifests, reports);
  2. anchor: the same aggregation, once per record, and the same format rows built into a list
     per format, then `datasets.Dataset.from_list(rows).to_parquet(...)` for each.

Both run at 10,000 and at 100,000 records (`--records` to change the large size). Targets:
loopline's time at most 1.2x the anchor's; loopline's peak memory flat as records grow.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
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
    from tests.support.export_data import completed, preference, record, response

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
    from services.exporter.store import ExportStore
    from shared.events import RECORDS_COMPLETED
    from shared.flows import FlowsConfig
    from shared.settings import ExportSettings, Settings

    flows: FlowsConfig = flows_config()
    settings = Settings(stack_dir=out, export=ExportSettings(dir=out / "exports"))
    flow = flows.flows[FLOW]
    started = time.perf_counter()
    with ExportStore(store_path(settings, FLOW)) as store:
        batch = []
        for offset, body in enumerate(events(n)):
            kept = accept(flows, RECORDS_COMPLETED, 0, offset, body)
            assert kept is not None
            batch.append(kept[1])
            if len(batch) == 500:
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

    from services.argilla_publisher.templates import PreferenceTemplate
    from services.exporter.aggregate import Questions, aggregate_completed
    from services.exporter.formats import DPOFormat, SFTFormat
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
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="the large size")
    parser.add_argument("--small", type=int, default=10_000, help="the small size")
    parser.add_argument("--child", choices=["loopline", "anchor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.records)
        return
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for n in (args.small, args.records):
        for contender in ("anchor", "loopline"):
            print(f"  running {contender} with {n:,} records ...", flush=True)
            results[contender, n] = measure(contender, n)
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
    print(
        f"loopline at {big:,}: {loopline['store_s']:.1f} s taking the events in (validation, "
        f"record store), {export_only:.1f} s for the export pass "
        f"({export_only / anchor['seconds']:.2f}x the anchor's time)"
    )
    verdict = "met" if ratio <= 1.2 else "NOT met"
    print(f"loopline / anchor wall time at {big:,}: {ratio:.2f}x  (target <= 1.2x: {verdict})")
    print(
        f"peak memory {small:,} → {big:,}: loopline x{growth:.2f}, anchor x{anchor_growth:.2f}"
        "  (target: loopline flat)"
    )


def measure(contender: str, n: int) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", contender, "--records", str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{contender} ({n}) failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
