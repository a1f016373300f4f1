"""Exports to a real S3 server: the local stack's object store (SeaweedFS), started alone on a
free port block for this module and stopped by its pid at the end.

Versions of a flow go to `s3://<bucket>/loopline` (credentials the usual ways: AWS_* variables,
or LOOPLINE_EXPORT__STORAGE_OPTIONS), the record store stays on local disk, and a version loads
back with `datasets` as the README says, its rows by record id. An upload that fails midway
leaves the previous version what readers find, and the next export completes.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import fsspec
import pytest
import s3fs
from datasets import load_dataset

import devstack as stack
from devstack.config import object_store_block
from devstack.object_store import STORE_KEY, STORE_SECRET
from devstack.sample_records import completed, preference, record, response
from devstack.testing import config_for_tests
from services.exporter.export import accept, export_versions, store_path
from services.exporter.object_lock import create_if_absent
from services.exporter.reading import load_version, version_files
from services.exporter.storage import versions_of
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED
from shared.flows import FlowsConfig
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FLOWS = FlowsConfig.model_validate(
    {
        "flows": {
            "support": {
                "publish": {"plugin": "preference"},
                "export": {"formats": [{"plugin": "sft"}, {"plugin": "dpo"}], "test_size": 0.25},
            }
        }
    }
)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The object store's S3 API, alone (no Kafka on it)."""
    install_dir = Path(os.environ.get("LOOPLINE_TEST_INSTALL_DIR", REPO / ".loopline" / "install"))
    config = config_for_tests(tmp_path_factory.mktemp("s3-stack"), install_dir)
    config = config.model_copy(update={"kafka_mode": "durable"})  # the mode that has the store
    try:
        stack.up(config, progress=print, components=("object-store",))
        yield f"http://{config.host}:{object_store_block(config.ports.object_store)['s3.port']}"
    finally:
        stack.down(config)


@pytest.fixture
def options(endpoint: str) -> dict[str, Any]:
    """The filesystem options a reader (or the exporter) passes: the stack's identity. Each
    `datasets` call gets its own copy: it adds its own keys to the dict it is given."""
    return {
        "key": STORE_KEY,
        "secret": STORE_SECRET,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": REGION},
    }


@pytest.fixture
def bucket(options: dict[str, Any]) -> str:
    name = f"exports-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(**options).mkdir(name)
    return name


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def answered(first: int, last: int) -> list[tuple[str, bytes]]:
    """Records people answered, i in [first, last): (record id, `records.completed` message)."""
    out = []
    for i in range(first, last):
        rec = record(
            instruction=f"task {i}",
            responses=((f"good answer {i}", "model-a"), (f"weak answer {i}", "model-b")),
        )
        answers = [response(rec, "ann1", preference(5, 2)), response(rec, "ann2", preference(4, 1))]
        out.append((rec.record_id, completed(rec, *answers).to_bytes()))
    return out


def keep(settings: Settings, messages: list[tuple[str, bytes]], first_offset: int) -> None:
    """What the exporter does with consumed messages: the store keeps the accepted ones."""
    events = []
    for offset, (_, body) in enumerate(messages, start=first_offset):
        kept = accept(FLOWS, RECORDS_COMPLETED, 0, offset, body)
        assert kept is not None
        events.append(kept[1])
    with ExportStore(store_path(settings, "support")) as store:
        store.add(events, ["sft", "dpo"])


def export(settings: Settings) -> dict[str, Any]:
    flow = FLOWS.flows["support"]
    with ExportStore(store_path(settings, "support")) as store:
        return {
            r.format: r
            for r in export_versions(settings, "support", flow, flow.export.formats, store)
        }


def record_ids(version: str, options: dict[str, Any]) -> list[str]:
    """The record ids of a version, loaded the README's way: the Parquet files of the splits
    with rows, as its manifest lists them, relative to the format's URL."""
    with fsspec.open(f"{version}/manifest.json", "rt", **options) as f:
        shards: dict[str, list[dict[str, Any]]] = json.load(f)["shards"]
    root = version.rsplit("/", 1)[0]
    files = {split: [f"{root}/{s['path']}" for s in listed] for split, listed in shards.items()}
    assert files == version_files(version, dict(options))
    loaded = load_dataset("parquet", data_files=files, storage_options=dict(options))
    return sorted(rid for split in loaded.values() for rid in split["record_id"])


def test_versions_go_to_s3_and_load_back_with_datasets(
    tmp_path: Path,
    endpoint: str,
    bucket: str,
    options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The exporter's credentials and endpoint: the usual AWS variables, no storage_options.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", STORE_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", STORE_SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("LOOPLINE_EXPORT__DIR", f"s3://{bucket}/loopline")
    settings = Settings(stack_dir=tmp_path)
    first, more = answered(0, 6), answered(6, 14)
    keep(settings, first, 0)
    v1 = export(settings)
    keep(settings, more, len(first))
    v2 = export(settings)
    again = export(settings)

    assert {f: (r.created, r.version) for f, r in v1.items()} == {
        "sft": (True, 1),
        "dpo": (True, 1),
    }
    assert {f: (r.created, r.version) for f, r in v2.items()} == {
        "sft": (True, 2),
        "dpo": (True, 2),
    }
    assert {f: (r.created, r.version) for f, r in again.items()} == {
        "sft": (False, 2),
        "dpo": (False, 2),
    }
    for name in ("sft", "dpo"):
        assert versions_of(settings, "support", name).numbers() == [1, 2]

    # A reader with only the bucket and its options: the pointer names the latest version.
    sft = f"s3://{bucket}/loopline/support/sft"
    with fsspec.open(f"{sft}/latest", "rt", **options) as pointer:
        latest = f"{sft}/{pointer.read().strip()}"
    assert latest == v2["sft"].path
    everyone = sorted(rid for rid, _ in first + more)
    assert record_ids(latest, options) == everyone
    assert record_ids(f"{sft}/v1", options) == sorted(rid for rid, _ in first)
    on_disk = load_version(latest, storage_options=dict(options))
    assert sorted([*on_disk["train"]["record_id"], *on_disk["test"]["record_id"]]) == everyone
    dpo = load_version(str(v2["dpo"].path), storage_options=dict(options))
    rows = dpo["train"].to_list() + dpo["test"].to_list()
    assert {r["record_id"]: (r["chosen"], r["rejected"]) for r in rows} == {
        rid: (f"good answer {i}", f"weak answer {i}") for i, (rid, _) in enumerate(first + more)
    }

    # The store is on local disk; the bucket has shards, versions, cards, pointers, no more.
    assert (tmp_path / "exports/support/records.sqlite").is_file()
    names = s3fs.S3FileSystem(**options).find(bucket)
    assert not [n for n in names if "records.sqlite" in n or n.endswith(".lock")]
    top = {n.split("/")[4] for n in names if n.count("/") >= 4}
    assert top == {"latest", "README.md", "shards", "v1", "v2"}


def test_an_upload_failing_midway_on_s3_leaves_the_previous_version(
    tmp_path: Path,
    bucket: str,
    options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Credentials this time from LOOPLINE_EXPORT__STORAGE_OPTIONS: never logged.
    caplog.set_level(logging.DEBUG, logger="loopline")
    monkeypatch.setenv("LOOPLINE_EXPORT__DIR", f"s3://{bucket}/loopline")
    monkeypatch.setenv("LOOPLINE_EXPORT__STORAGE_OPTIONS", json.dumps(options))
    settings = Settings(stack_dir=tmp_path)
    first = answered(0, 5)
    keep(settings, first, 0)
    export(settings)
    keep(settings, answered(5, 9), 5)

    storage = versions_of(settings, "support", "sft")
    assert versions_of(settings, "support", "sft").fs is storage.fs  # one client, patched here
    real_put = storage.fs.put_file
    uploads: list[str] = []

    def put_file(lpath: str, rpath: str, **kwargs: Any) -> Any:
        if len(uploads) == 4:
            raise ConnectionResetError("connection reset by peer")
        uploads.append(rpath)
        return real_put(lpath, rpath, **kwargs)

    monkeypatch.setattr(storage.fs, "put_file", put_file)
    with pytest.raises(ConnectionResetError):
        export(settings)
    monkeypatch.setattr(storage.fs, "put_file", real_put)

    assert storage.numbers() == [1]  # v2 is half-written, not published
    assert len(uploads) == 4 and all("/sft/shards/" in name for name in uploads)  # shards first
    assert not storage.fs.exists(f"{bucket}/loopline/support/sft/v2/manifest.json")
    assert storage.fs.cat_file(f"{bucket}/loopline/support/sft/latest") == b"v1\n"
    assert record_ids(str(storage.location(1)), options) == sorted(rid for rid, _ in first)

    done = export(settings)
    assert (done["sft"].created, done["sft"].version) == (True, 2)
    assert storage.numbers() == [1, 2]
    assert record_ids(str(done["sft"].path), options) == sorted(rid for rid, _ in answered(0, 9))
    manifest = storage.read_manifest(2)
    sft = f"{bucket}/loopline/support/sft"
    parquet = {n.split("/sft/", 1)[1] for n in storage.fs.find(f"{sft}/shards")}
    assert set(manifest["checksums"]) <= parquet  # every shard v2 lists is there
    # The secret never reached a log line.
    assert STORE_SECRET not in caplog.text and "storage_options" not in caplog.text


def test_the_object_store_honours_conditional_writes(bucket: str, options: dict[str, Any]) -> None:
    """The lock object relies on it: a second create of one object is refused."""
    fs = s3fs.S3FileSystem(**options)
    path = f"{bucket}/loopline/support/sft/.lock"
    assert create_if_absent(fs, path, b"first") is True
    assert create_if_absent(fs, path, b"second") is False
    assert fs.cat_file(path) == b"first"
