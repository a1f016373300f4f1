"""Retention (issue 16): the versions kept are the newest N and/or those younger than D (the
latest always); a retired version's shards stay for a grace period, then go unless a kept
version lists them; shards no version ever listed (a crash between a version's shards and its
manifest) go at the next export; the previous version stays whole. Local and `memory://`."""

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from fsspec.implementations.memory import MemoryFileSystem

from services.exporter.app import register
from services.exporter.card import CARD, card_configs
from services.exporter.export import format_dir
from services.exporter.manifests import manifest_files, shards_of
from services.exporter.retention import Retention, apply_retention
from services.exporter.storage import LocalVersions, VersionStorage, versions_of
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.memory_fs import MEMORY
from tests.unit.exporter.service_helpers import close, exporter_context
from tests.unit.exporter.test_export_incremental import answered, export, flows_config, keep


def four_versions(settings: Settings) -> VersionStorage:
    """v1 of 40 records, then three versions of one changed record each."""
    flows = flows_config("sft")
    keep(settings, flows, [answered(i)[1] for i in range(40)])
    export(settings, flows)
    for step, i in enumerate((2, 13, 29), start=1):
        keep(settings, flows, [answered(i, best=2, minute=step)[1]], first=39 + step)
        [result] = export(settings, flows).values()
        assert result.created and result.version == step + 1
    return versions_of(settings, "support", "sft")


def shards_there(storage: VersionStorage) -> set[str]:
    return set(storage.shard_paths())


def assert_whole(storage: VersionStorage) -> None:
    """Every shard each kept version lists is there, and so is the card's every file."""
    there = shards_there(storage)
    for manifest in storage.manifests():
        for files in manifest_files(manifest).values():
            assert set(files) <= there, manifest["version"]
    text = storage.read_text(CARD)
    assert text is not None
    for config in card_configs(text):
        for entry in config["data_files"]:
            assert set(entry["path"]) <= there, config["config_name"]


@pytest.mark.parametrize("where", ["local", "memory"])
def test_the_newest_versions_stay_whole_and_retired_shards_go_after_the_grace(
    tmp_path: Path, url: str, where: str
) -> None:
    root: Any = tmp_path / "exports" if where == "local" else url
    retain = ExportSettings(dir=root, buckets=8, keep_versions=2, retention_grace_s=60)
    settings = Settings(stack_dir=tmp_path, export=retain)
    storage = four_versions(settings)
    assert storage.numbers() == [3, 4]
    text = storage.read_text(CARD)
    assert text is not None
    assert [c["config_name"] for c in card_configs(text)] == ["default", "v4", "v3"]
    assert_whole(storage)
    notes = storage.retired()
    assert [n["version"] for n in notes] == [1, 2]
    only_retired = set().union(*(n["files"] for n in notes)) - {
        s.path for m in storage.manifests() for ss in shards_of(m).values() for s in ss
    }
    assert only_retired and only_retired <= shards_there(storage)  # kept for the grace

    with storage.lock():  # a minute later
        removed = apply_retention(storage, Retention.of(retain), now=time.time() + 61)
    assert removed.versions == [] and set(removed.shards) == only_retired
    assert not only_retired & shards_there(storage) and storage.retired() == []
    assert_whole(storage)
    assert storage.numbers() == [3, 4]


def test_versions_younger_than_keep_for_s_stay(tmp_path: Path) -> None:
    retain = ExportSettings(buckets=8, keep_for_s=3600, retention_grace_s=0)
    settings = Settings(stack_dir=tmp_path, export=retain)
    storage = four_versions(settings)
    assert storage.numbers() == [1, 2, 3, 4]  # all young
    assert isinstance(storage, LocalVersions)
    old = time.time() - 7200
    for number in (1, 2, 4):  # the latest is kept however old it is
        os.utime(storage.location(number) / "manifest.json", (old, old))
    with storage.lock():
        removed = apply_retention(storage, Retention.of(retain))
    assert removed.versions == [1, 2] and storage.numbers() == [3, 4]
    assert_whole(storage)
    assert not (storage.location(1)).exists()


def test_without_a_setting_every_version_stays(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=8))
    storage = four_versions(settings)
    assert storage.numbers() == [1, 2, 3, 4] and storage.retired() == []
    assert_whole(storage)


def test_a_crash_between_shards_and_manifest_keeps_the_previous_version_and_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(buckets=8))
    flows = flows_config("sft")
    keep(settings, flows, [answered(i)[1] for i in range(40)])
    export(settings, flows)
    root = format_dir(settings, "support", "sft")
    assert isinstance(root, Path)
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    keep(settings, flows, [answered(5, best=2, minute=3)[1]], first=40)

    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if Path(dst).name == "v2":  # the shards are in place; the version is not
            raise OSError("the machine died")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="died"):
        export(settings, flows)
    monkeypatch.undo()
    storage = versions_of(settings, "support", "sft")
    assert storage.numbers() == [1]
    for path, data in before.items():  # v1, its shards and the card, as they were
        assert path.read_bytes() == data
    orphans = shards_there(storage) - {str(p.relative_to(root)) for p in before}
    assert len(orphans) == 1  # the changed bucket's new shard, listed by no manifest

    keep(settings, flows, [answered(6, best=2, minute=4)[1]], first=41)
    [v2] = export(settings, flows).values()
    assert v2.created and v2.version == 2 and storage.numbers() == [1, 2]
    assert_whole(storage)
    listed = {s.path for m in storage.manifests() for ss in shards_of(m).values() for s in ss}
    assert shards_there(storage) == listed  # the crash's leftovers are gone


def test_an_upload_cut_after_the_shards_keeps_the_previous_version_and_is_cleaned(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(dir=url, buckets=8))
    flows = flows_config("sft")
    keep(settings, flows, [answered(i)[1] for i in range(40)])
    export(settings, flows)
    storage = versions_of(settings, "support", "sft")
    prefix = MEMORY._strip_protocol(str(storage.location()))
    before = {p: MEMORY.cat_file(p) for p in MEMORY.find(prefix)}
    keep(settings, flows, [answered(5, best=2, minute=3)[1]], first=40)

    real_put = MemoryFileSystem.put_file

    def put_file(self: MemoryFileSystem, lpath: str, rpath: str, *args: Any, **kw: Any) -> Any:
        if "/shards/" not in rpath:  # every new shard is up; the version's own files are not
            raise ConnectionResetError("connection reset by peer")
        return real_put(self, lpath, rpath, *args, **kw)

    monkeypatch.setattr(MemoryFileSystem, "put_file", put_file)
    with pytest.raises(ConnectionResetError):
        export(settings, flows)
    monkeypatch.undo()
    assert storage.numbers() == [1]
    now = {p: MEMORY.cat_file(p) for p in MEMORY.find(prefix)}
    assert {p: now[p] for p in before} == before  # v1, its shards, the card, the pointer
    assert len(set(now) - set(before)) == 1  # the changed bucket's shard, listed by nothing

    keep(settings, flows, [answered(6, best=2, minute=4)[1]], first=41)
    [v2] = export(settings, flows).values()
    assert v2.created and v2.version == 2 and storage.numbers() == [1, 2]
    assert_whole(storage)
    listed = {s.path for m in storage.manifests() for ss in shards_of(m).values() for s in ss}
    assert shards_there(storage) == listed


async def test_the_service_retires_aged_versions_of_a_quiet_flow(tmp_path: Path) -> None:
    # No record comes, so no export runs: the service's timer applies retention all the same.
    exports = tmp_path / "exports"
    retain: dict[str, Any] = {"buckets": 8, "keep_for_s": 3600, "retention_grace_s": 0}
    storage = four_versions(
        Settings(stack_dir=tmp_path, export=ExportSettings(dir=exports, **retain))
    )
    assert isinstance(storage, LocalVersions)
    old = time.time() - 7200
    for number in (1, 2):
        os.utime(storage.location(number) / "manifest.json", (old, old))
    ctx = exporter_context(exports, every_records=0, retention_check_s=0.1, **retain)
    register(ctx)
    async with TestKafkaBroker(ctx.broker):
        deadline = time.monotonic() + 30
        while storage.numbers() != [3, 4]:
            assert time.monotonic() < deadline, storage.numbers()
            await asyncio.sleep(0.1)
        await close(ctx)
    assert_whole(storage)
    assert storage.retired() == []  # no grace: the retired versions' own shards are gone too
