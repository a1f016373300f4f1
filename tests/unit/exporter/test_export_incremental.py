"""Versions that cost what changed (issue 16): a new version after a few changed records reads
only the records of their buckets and writes only those buckets' shards; every other shard of
the previous version is the same file. What it makes is what a full export of the same records
makes, byte for byte."""

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from devstack.sample_records import completed, preference, record, response
from services.exporter.buckets import bucket_of
from services.exporter.export import ExportResult, accept, export_versions, format_dir, store_path
from services.exporter.manifests import shards_of
from services.exporter.reading import load_version, read_version_manifest
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED
from shared.flows import FlowsConfig
from shared.settings import ExportSettings, Settings

BUCKETS = 8
FormatFiles = dict[str, tuple[int, int]]  # Parquet file -> (inode, mtime_ns)


def flows_config(*formats: str, **options: Any) -> FlowsConfig:
    return FlowsConfig.model_validate(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {
                        "formats": [{"plugin": name, "options": options} for name in formats],
                        "test_size": 0.25,
                    },
                }
            }
        }
    )


def answered(i: int, best: int = 1, minute: int = 0) -> tuple[str, bytes]:
    """Record i, people's answer (their best response: `best`), as (record_id, message)."""
    rec = record(
        instruction=f"task {i}",
        responses=((f"good answer {i}", "model-a"), (f"weak answer {i}", "model-b")),
    )
    values = preference(5, 2, best=1) if best == 1 else preference(2, 5, best=2)
    answers = [response(rec, "ann1", values, minute=minute)]
    return rec.record_id, completed(rec, *answers, minute=minute).to_bytes()


def keep(settings: Settings, flows: FlowsConfig, bodies: list[bytes], first: int = 0) -> None:
    formats = [ref.plugin for ref in flows.flows["support"].export.formats]
    with ExportStore(store_path(settings, "support")) as store:
        events = []
        for offset, body in enumerate(bodies, start=first):
            kept = accept(flows, RECORDS_COMPLETED, 0, offset, body)
            assert kept is not None
            events.append(kept[1])
        store.add(events, formats)


def export(settings: Settings, flows: FlowsConfig) -> dict[str, ExportResult]:
    flow = flows.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        results = export_versions(settings, "support", flow, flow.export.formats, store)
    return {r.format: r for r in results}


def parquet_files(root: Path) -> FormatFiles:
    """Every Parquet file under a format's directory, with what tells a rewritten file apart."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*.parquet")
    }


def local(settings: Settings, name: str) -> Path:
    found = format_dir(settings, "support", name)
    assert isinstance(found, Path)
    return found


def test_a_version_after_one_change_writes_only_that_records_bucket(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=BUCKETS))
    flows = flows_config("sft")
    keep(settings, flows, [body for _, body in map(answered, range(200))])
    export(settings, flows)
    root = local(settings, "sft")
    before = parquet_files(root)

    rid, body = answered(7, best=2, minute=5)  # one record changed
    keep(settings, flows, [body], first=200)
    v2 = export(settings, flows)["sft"]
    after = parquet_files(root)
    written = sorted(name for name, identity in after.items() if before.get(name) != identity)
    assert len(written) == 1, written  # the changed record's bucket, in its split
    assert f"/b{bucket_of(rid, BUCKETS):05d}-" in written[0]
    rows = pq.read_metadata(root / written[0]).num_rows
    assert 0 < rows < 200 / 4  # one bucket's rows of its split, not the whole dataset
    in_bucket = sum(
        bucket_of(answered(i)[0], BUCKETS) == bucket_of(rid, BUCKETS) for i in range(200)
    )
    assert (v2.version, v2.records_read, v2.written) == (2, in_bucket, tuple(written))


def test_a_version_after_k_changes_touches_only_their_buckets(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=16))
    flows = flows_config("sft", "dpo")
    everyone = [answered(i) for i in range(300)]
    keep(settings, flows, [body for _, body in everyone])
    v1 = export(settings, flows)
    files = {name: parquet_files(local(settings, name)) for name in v1}

    changes = [answered(i, best=2, minute=5) for i in (3, 50, 51, 170)]
    keep(settings, flows, [body for _, body in changes], first=300)
    v2 = export(settings, flows)
    touched = {bucket_of(rid, 16) for rid, _ in changes}
    assert len(touched) >= 2
    for name, result in v2.items():
        root = local(settings, name)
        old, new = (shards_of(read_version_manifest(root / f"v{n}")) for n in (1, 2))
        now = parquet_files(root)
        for split, shards in new.items():
            for shard in shards:
                if shard.bucket in touched:
                    continue  # rewritten: its rows changed
                assert shard in old[split], (name, shard)  # listed as it was in v1 ...
                assert now[shard.path] == files[name][shard.path]  # ... the same file, untouched
        rewritten = {
            s.bucket for shards in new.values() for s in shards if s.path not in files[name]
        }
        assert rewritten == touched, name
        in_touched = sum(bucket_of(rid, 16) in touched for rid, _ in everyone)
        assert result.records_read == in_touched < len(everyone)
        assert result.version == 2 and set(result.written) == set(now) - set(files[name])


def same_version(a: Path, b: Path) -> None:
    """Two versions hold the same bytes: manifest (but its number), report, plots and shards."""
    first, second = read_version_manifest(a), read_version_manifest(b)
    assert {**first, "version": 0} == {**second, "version": 0}
    for name in ("report.html", *(f"plots/{p.name}" for p in (a / "plots").iterdir())):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for shards in shards_of(first).values():
        for shard in shards:
            assert (a.parent / shard.path).read_bytes() == (b.parent / shard.path).read_bytes()


def test_incremental_versions_equal_a_full_export_of_the_same_records(tmp_path: Path) -> None:
    flows = flows_config("sft", "eval")
    steps: list[list[bytes]] = [
        [body for _, body in map(answered, range(120))],
        [answered(i, best=2, minute=5)[1] for i in (4, 90)] + [answered(120)[1]],
        [answered(i, best=1, minute=9)[1] for i in (4, 7, 11)],
        [answered(i)[1] for i in range(121, 140)],
    ]
    incremental = Settings(stack_dir=tmp_path / "inc", export=ExportSettings(buckets=BUCKETS))
    offset = 0
    read: list[int] = []
    for bodies in steps:
        keep(incremental, flows, bodies, first=offset)
        offset += len(bodies)
        results = export(incremental, flows)
        read.append(results["sft"].records_read)
    assert {r.version for r in results.values()} == {len(steps)}
    assert read[0] == 120 and read[2] < 121  # three changed records: some buckets only

    full = Settings(stack_dir=tmp_path / "full", export=ExportSettings(buckets=BUCKETS))
    offset = 0
    for bodies in steps:
        keep(full, flows, bodies, first=offset)
        offset += len(bodies)
    once = export(full, flows)
    for name in ("sft", "eval"):
        assert once[name].version == 1
        same_version(local(incremental, name) / f"v{len(steps)}", local(full, name) / "v1")
    win_rates = load_version(local(incremental, "eval") / f"v{len(steps)}")["win_rates"]
    [a_vs_b] = win_rates.to_list()
    assert a_vs_b["wins"] + a_vs_b["losses"] + a_vs_b["ties"] == 140


def test_a_format_made_another_way_reads_every_record_again(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=BUCKETS))
    keep(settings, flows_config("sft"), [body for _, body in map(answered, range(40))])
    export(settings, flows_config("sft"))
    keep(settings, flows_config("sft"), [answered(3, best=2, minute=5)[1]], first=40)
    other = flows_config("sft", style="prompt-completion")  # the same records, other rows
    v2 = export(settings, other)["sft"]
    assert (v2.created, v2.version, v2.records_read) == (True, 2, 40)
    manifest = json.loads((local(settings, "sft") / "v2" / "manifest.json").read_text())
    assert manifest["options"] == {"style": "prompt-completion"}
    assert "completion" in manifest["schema"]["train"]
