"""Exports to a URL (fsspec; here its in-memory filesystem, `memory://`): the same versions as
in a local directory, byte for byte (shards, manifests, reports, the card), published by their
manifest and a `latest` pointer. An upload that fails midway leaves the previous version what
readers find, and the next export completes cleanly. The record store stays on local disk."""

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from datasets import DatasetDict, load_dataset
from faststream.kafka import TestKafkaBroker
from fsspec.implementations.memory import MemoryFileSystem

from services.exporter.app import register
from services.exporter.export import store_path, unannounced
from services.exporter.reading import load_version, read_version_manifest, version_files
from services.exporter.storage import LATEST, RemoteVersions, versions_of
from services.exporter.store import ExportStore
from shared.events import RECORDS_COMPLETED
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.memory_fs import MEMORY
from tests.unit.exporter.service_helpers import (
    Outputs,
    close,
    completed_event,
    exporter_context,
    record_ids,
)
from tests.unit.exporter.test_export_versions import (
    EXPECTED,
    export_all,
    files_of,
    fill,
    flows_config,
)


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def remote(tmp_path: Path, url: str) -> Settings:
    return Settings(stack_dir=tmp_path, export=ExportSettings(dir=url))


def remote_files(location: str) -> dict[str, bytes]:
    """Every object under a URL, by its path relative to it."""
    root = MEMORY._strip_protocol(location).rstrip("/")
    return {p[len(root) + 1 :]: MEMORY.cat_file(p) for p in sorted(MEMORY.find(root))}


def pointer(settings: Settings, format_name: str) -> str:
    storage = versions_of(settings, "support", format_name)
    return MEMORY.cat_file(MEMORY._strip_protocol(f"{storage.location()}/{LATEST}")).decode()


def format_files(location: str) -> dict[str, bytes]:
    """A URL format directory's files but its `latest` pointer (a local one has none)."""
    return {name: data for name, data in remote_files(location).items() if name != LATEST}


def local_format_files(path: Path) -> dict[str, bytes]:
    """A local format directory's files but its lock file (a URL's is gone once released)."""
    return {name: data for name, data in files_of(path).items() if name != ".lock"}


def staged(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "exports").rglob(".tmp-*")]


def test_a_url_gets_the_local_versions_byte_for_byte_and_the_store_stays_local(
    tmp_path: Path, url: str
) -> None:
    flows = flows_config()
    local = Settings(stack_dir=tmp_path / "local")
    fill(local, flows)
    export_all(local, flows)
    settings = remote(tmp_path / "remote", url)
    fill(settings, flows)
    results = export_all(settings, flows)

    assert store_path(settings, "support") == tmp_path / "remote/exports/support/records.sqlite"
    assert store_path(settings, "support").is_file()
    for name in EXPECTED:
        result = results[name]
        assert result.created and result.version == 1
        assert result.path == f"{url}/support/{name}/v1"
        assert result.event().location == result.path
        assert format_files(f"{url}/support/{name}") == local_format_files(
            tmp_path / "local/exports/support" / name
        )
        assert pointer(settings, name) == "v1\n"
        assert versions_of(settings, "support", name).numbers() == [1]
    # Nothing but versions, their pointers and no lock left behind; no staging left on disk.
    objects = remote_files(url)
    assert not [p for p in objects if p.endswith(".lock") or p.endswith("records.sqlite")]
    assert not staged(tmp_path / "remote")
    # Loaded back the two documented ways, with the filesystem's options.
    version = str(results["sft"].path)
    on_disk = load_version(version, storage_options={})
    assert isinstance(on_disk, DatasetDict)
    assert on_disk["train"].num_rows + on_disk["test"].num_rows == 41
    files = version_files(version, storage_options={})
    assert all(f.startswith(f"{url}/support/sft/shards/") for fs in files.values() for f in fs)
    parquet = load_dataset("parquet", data_files=files, storage_options={})
    assert parquet["train"].to_list() == on_disk["train"].to_list()


def test_unchanged_data_makes_no_version_and_new_data_moves_the_pointer(
    tmp_path: Path, url: str
) -> None:
    settings = remote(tmp_path, url)
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=10)
    [v1] = export_all(settings, flows).values()
    [again] = export_all(settings, flows).values()
    assert (again.created, again.version, again.path) == (False, 1, v1.path)
    fill(settings, flows, n=20)
    [v2] = export_all(settings, flows).values()
    assert (v2.created, v2.version) == (True, 2) and pointer(settings, "sft") == "v2\n"
    storage = versions_of(settings, "support", "sft")
    assert storage.numbers() == [1, 2]
    assert storage.read_manifest(2)["rows"] == v2.rows
    # A crash between a manifest and its pointer: the next export sets the pointer right.
    MEMORY.pipe_file(MEMORY._strip_protocol(f"{storage.location()}/{LATEST}"), b"v1\n")
    [same] = export_all(settings, flows).values()
    assert not same.created and pointer(settings, "sft") == "v2\n"


def version_objects(location: str) -> dict[str, bytes]:
    """A URL version's own files and the shards its manifest lists, by path under the format."""
    root = location.rsplit("/", 1)[0]
    found = {f"{location[len(root) + 1 :]}/{k}": v for k, v in remote_files(location).items()}
    for files in version_files(location, storage_options={}).values():
        found.update(
            {f[len(root) + 1 :]: MEMORY.cat_file(MEMORY._strip_protocol(f)) for f in files}
        )
    return found


def test_an_upload_failing_midway_leaves_the_previous_version_and_the_next_run_completes(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = remote(tmp_path, url)
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=10)
    [v1] = export_all(settings, flows).values()
    before = version_objects(str(v1.path))
    fill(settings, flows, n=40)  # more records: the next export differs

    real_put = MemoryFileSystem.put_file
    uploaded: list[str] = []

    def put_file(self: MemoryFileSystem, lpath: str, rpath: str, *args: Any, **kw: Any) -> Any:
        if len(uploaded) == 5:
            raise ConnectionResetError("connection reset by peer")
        uploaded.append(rpath)
        return real_put(self, lpath, rpath, *args, **kw)

    monkeypatch.setattr(MemoryFileSystem, "put_file", put_file)
    with pytest.raises(ConnectionResetError):
        export_all(settings, flows)
    monkeypatch.undo()

    storage = versions_of(settings, "support", "sft")
    assert len(uploaded) == 5 and all("/shards/" in path for path in uploaded)  # shards first
    assert not MEMORY.exists(MEMORY._strip_protocol(f"{storage.location()}/v2/manifest.json"))
    # What a reader finds: v1, whole, by the pointer and by the manifests.
    assert storage.numbers() == [1] and pointer(settings, "sft") == "v1\n"
    assert version_objects(str(v1.path)) == before
    latest = f"{storage.location()}/{pointer(settings, 'sft').strip()}"
    loaded = load_version(latest, storage_options={})
    assert loaded["train"].num_rows + loaded["test"].num_rows == 11
    assert not staged(tmp_path)  # the failed export removed its staging directory

    # Other data than the failed attempt's: the new version is what a local export makes.
    fill(settings, flows, n=60)
    [v2] = export_all(settings, flows).values()
    assert (v2.created, v2.version) == (True, 2) and pointer(settings, "sft") == "v2\n"
    assert storage.numbers() == [1, 2]
    local = Settings(stack_dir=tmp_path / "local")
    for n in (10, 40, 60):
        fill(local, flows, n=n)
    [expected] = export_all(local, flows).values()
    assert isinstance(expected.path, Path)
    got = version_objects(str(v2.path))
    want = {
        str(Path(name).relative_to(expected.path.parent)): data
        for name, data in (
            [(str(p), p.read_bytes()) for p in expected.path.rglob("*") if p.is_file()]
            + [
                (f, Path(f).read_bytes())
                for fs in version_files(expected.path).values()
                for f in fs
            ]
        )
    }
    assert json.loads(got.pop("v2/manifest.json")) == {
        **json.loads(want.pop("v1/manifest.json")),
        "version": 2,
    }
    assert {k.replace("v2/", "v1/", 1): v for k, v in got.items()} == want
    assert version_objects(str(v1.path)) == before
    assert read_version_manifest(str(v1.path), {})["version"] == 1
    assert not staged(tmp_path)


async def test_the_service_announces_a_url_and_pushes_from_it(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 12
    ctx = exporter_context(
        url,  # type: ignore[arg-type]
        every_records=n,
        hub={"repo_id": "my-org/support-sft"},
        store_dir=tmp_path / "stores",
        hf_token="hf_secret",
    )
    from services.exporter import hub
    from tests.unit.exporter.test_hub_push import FakeHub

    fake = FakeHub()
    monkeypatch.setattr(hub, "connect", fake.connect)
    out = Outputs(ctx.broker)
    register(ctx)
    published = [completed_event(i) for i in range(n)]
    async with TestKafkaBroker(ctx.broker) as broker:
        await broker.publish_batch(*(body for _, body in published), topic=RECORDS_COMPLETED)
        event = await out.next_announcement()
        await close(ctx)
    assert event.location == f"{url}/support/sft/v1" and (event.version, event.rows) == (1, n)
    assert record_ids(event.location) == sorted(rid for rid, _ in published)  # type: ignore[arg-type]
    pushed = json.loads(fake.files["my-org/support-sft"]["sft/v1/manifest.json"])
    assert [m for m, _ in fake.commits] == ["Loopline support/sft v1"]
    assert sum(pushed["rows"].values()) == n
    assert (tmp_path / "stores/support/records.sqlite").is_file()
    with ExportStore(tmp_path / "stores/support/records.sqlite") as store:
        assert store.announced("sft") == 1
        refs = ctx.flows.flows["support"].export.formats
        assert unannounced(ctx.settings, "support", refs, store) == []


def test_a_remote_storage_gets_the_settings_options(tmp_path: Path, url: str) -> None:
    settings = Settings(
        stack_dir=tmp_path,
        export=ExportSettings(dir=url, storage_options='{"note": "kept"}'),
    )
    storage = versions_of(settings, "support", "sft")
    assert isinstance(storage, RemoteVersions)
    assert storage.fs.storage_options == {"use_listings_cache": False, "note": "kept"}
    assert storage.staging == tmp_path / "exports/support/.staging/sft"
