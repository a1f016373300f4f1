"""Exports on several cores: worker processes give the same bytes as one process, and a record
that fails in a worker fails the export without touching the previous version."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.exporter.export import format_dir, store_path
from services.exporter.store import HUMAN, ExportStore, StoredEvent
from services.exporter.versions import versions
from shared.events import RECORDS_COMPLETED
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.test_export_versions import (
    EXPECTED,
    export_all,
    files_of,
    fill,
    flows_config,
    version_bytes,
)


def settings(root: Path, workers: int) -> Settings:
    # Small chunks, so that the pass has many and each worker gets several.
    export = ExportSettings(batch_rows=7, workers=workers, parallel_from=0)
    return Settings(stack_dir=root, export=export)


def test_workers_write_the_same_bytes_as_one_process(tmp_path: Path) -> None:
    flows = flows_config()
    alone, shared = settings(tmp_path / "alone", 1), settings(tmp_path / "workers", 2)
    for each in (alone, shared):
        fill(each, flows, n=60)
        assert all(r.created and r.version == 1 for r in export_all(each, flows).values())
    for name in EXPECTED:
        a = files_of(format_dir(alone, "support", name))
        b = files_of(format_dir(shared, "support", name))
        assert a.keys() == b.keys() and a == b, name  # shards, report, manifest and card alike
        assert b"records" in b["v1/report.html"]


def test_a_record_failing_in_a_worker_fails_the_export_and_keeps_the_last_version(
    tmp_path: Path,
) -> None:
    flows = flows_config(formats=[{"plugin": "sft"}])
    config = settings(tmp_path, 2)
    fill(config, flows, n=30)
    [v1] = export_all(config, flows).values()
    before = version_bytes(v1.path)
    with ExportStore(store_path(config, "support")) as store:  # past `accept`'s validation
        broken = StoredEvent(
            "zz-broken", HUMAN, "2026-02-01T00:00:00+00:00", RECORDS_COMPLETED, 0, 999, b"{}"
        )
        store.add([broken], ["sft"])
    with pytest.raises(ValidationError):
        export_all(config, flows)
    target = format_dir(config, "support", "sft")
    assert versions(target) == [1] and version_bytes(v1.path) == before
    assert not [p for p in target.iterdir() if p.name.startswith(".tmp-")]
