"""Versions that cost what changed (issue 16): a new version after a few changed records writes
only the shards of their buckets; every other shard of the previous version is the same file."""

from pathlib import Path

import pyarrow.parquet as pq

from devstack.sample_records import completed, preference, record, response
from services.exporter.export import accept, export_versions, format_dir, store_path
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED
from shared.flows import FlowsConfig
from shared.settings import ExportSettings, Settings

FormatFiles = dict[str, tuple[int, int]]  # Parquet file -> (inode, mtime_ns)


def flows_config(*formats: str) -> FlowsConfig:
    return FlowsConfig.model_validate(
        {
            "flows": {
                "support": {
                    "publish": {"plugin": "preference"},
                    "export": {
                        "formats": [{"plugin": name} for name in formats],
                        "test_size": 0.25,
                    },
                }
            }
        }
    )


def answered(i: int, best: int = 1, minute: int = 0) -> bytes:
    rec = record(
        instruction=f"task {i}",
        responses=((f"good answer {i}", "model-a"), (f"weak answer {i}", "model-b")),
    )
    answers = [response(rec, "ann1", preference(5, 2, best=best), minute=minute)]
    return completed(rec, *answers, minute=minute).to_bytes()


def keep(settings: Settings, flows: FlowsConfig, bodies: list[bytes], first: int = 0) -> None:
    formats = [ref.plugin for ref in flows.flows["support"].export.formats]
    with ExportStore(store_path(settings, "support")) as store:
        events = []
        for offset, body in enumerate(bodies, start=first):
            kept = accept(flows, RECORDS_COMPLETED, 0, offset, body)
            assert kept is not None
            events.append(kept[1])
        store.add(events, formats)


def export(settings: Settings, flows: FlowsConfig) -> None:
    flow = flows.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        results = export_versions(settings, "support", flow, flow.export.formats, store)
    assert all(r.created for r in results)


def parquet_files(root: Path) -> FormatFiles:
    """Every Parquet file under a format's directory, with what tells a rewritten file apart."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*.parquet")
    }


def test_a_version_after_one_change_writes_only_that_records_bucket(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=8))
    flows = flows_config("sft")
    keep(settings, flows, [answered(i) for i in range(200)])
    export(settings, flows)
    root = format_dir(settings, "support", "sft")
    assert isinstance(root, Path)
    before = parquet_files(root)

    keep(settings, flows, [answered(7, best=2, minute=5)], first=200)  # one record changed
    export(settings, flows)
    after = parquet_files(root)
    written = sorted(name for name, identity in after.items() if before.get(name) != identity)
    assert len(written) == 1, written  # the changed record's bucket, in its split
    rows = pq.read_metadata(root / written[0]).num_rows
    assert 0 < rows < 200 / 4  # one bucket's rows of its split, not the whole dataset
