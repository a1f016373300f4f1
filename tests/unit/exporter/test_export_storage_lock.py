"""Exports to a URL: the lock object that numbers versions (one writer publishes at a time, a
dead writer's lock is broken, a writer whose lock was taken over publishes nothing), and the
settings that point the exporter at a URL (the store stays local, options stay secret)."""

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from services.exporter.export import store_path
from services.exporter.object_lock import LockLostError, ObjectLock
from services.exporter.report import write_report as real_report
from services.exporter.storage import LOCK, versions_of
from shared.settings import ExportSettings, Settings
from tests.unit.exporter.memory_fs import MEMORY
from tests.unit.exporter.test_export_versions import export_all, fill, flows_config


def lock_path(url: str) -> str:
    return f"{MEMORY._strip_protocol(url)}/support/sft/{LOCK}"


def leave_lock(url: str, host: str, pid: int, expires: float) -> None:
    holder = {"host": host, "pid": pid, "token": "theirs", "expires": expires}
    MEMORY.pipe_file(lock_path(url), json.dumps(holder).encode())


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("holder", ["dead process here", "lease run out elsewhere"])
def test_the_lock_of_a_writer_that_is_gone_is_broken(tmp_path: Path, url: str, holder: str) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(dir=url))
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=5)
    if holder == "dead process here":
        leave_lock(url, socket.gethostname(), dead_pid(), time.time() + 3600)
    else:
        leave_lock(url, "another-machine", 1, time.time() - 1)
    [v1] = export_all(settings, flows).values()
    assert v1.created and versions_of(settings, "support", "sft").numbers() == [1]
    assert not MEMORY.exists(lock_path(url))


def test_two_exports_at_once_wait_for_the_lock_and_the_same_data_makes_one_version(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(stack_dir=tmp_path, export=ExportSettings(dir=url))
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=10)
    storage = versions_of(settings, "support", "sft")
    inner_results: list[dict[str, Any]] = []
    inner = threading.Thread(target=lambda: inner_results.append(export_all(settings, flows)))
    inner_waits = threading.Event()  # the second export found the lock held by a live writer
    real_holder = ObjectLock.holder

    def holder(self: ObjectLock) -> Any:
        if threading.current_thread() is inner:
            inner_waits.set()
        return real_holder(self)

    monkeypatch.setattr(ObjectLock, "holder", holder)

    def write_report(*args: Any) -> None:
        # The first export holds the lock and is about to publish: a second export of the
        # same records must wait for it.
        if threading.current_thread() is threading.main_thread() and inner.ident is None:
            inner.start()
            assert inner_waits.wait(timeout=120)
            time.sleep(0.3)
            assert inner.is_alive() and storage.numbers() == []
        real_report(*args)

    monkeypatch.setattr("services.exporter.export.write_report", write_report)
    outer = export_all(settings, flows)["sft"]
    inner.join(timeout=120)
    [inner_sft] = [r["sft"] for r in inner_results]
    assert storage.numbers() == [1]
    assert sorted([outer.created, inner_sft.created]) == [False, True]
    assert outer.version == inner_sft.version == 1
    assert not MEMORY.exists(lock_path(url))


def test_a_writer_whose_lock_was_taken_over_stops_before_publishing(url: str) -> None:
    path = lock_path(url)
    mine = ObjectLock(MEMORY, path)
    mine.acquire()
    leave_lock(url, "another-machine", 1, time.time() + 3600)  # it broke an expired lease
    mine._renewed = float("-inf")  # due for renewal
    with pytest.raises(LockLostError):
        mine.renew()
    with pytest.raises(LockLostError):
        mine.check()
    mine.release()  # not its lock any more: left alone
    assert json.loads(MEMORY.cat_file(path))["token"] == "theirs"


def test_a_url_export_dir_keeps_the_store_local_and_its_options_secret(tmp_path: Path) -> None:
    assert ExportSettings(dir="s3://bucket/prefix").dir == "s3://bucket/prefix"
    assert ExportSettings(dir="relative/exports").dir == Path("relative/exports")
    assert ExportSettings(dir="file:///srv/exports").dir == Path("/srv/exports")

    s3 = Settings(stack_dir=tmp_path, export=ExportSettings(dir="s3://bucket/prefix"))
    assert s3.export_dir == "s3://bucket/prefix"
    assert store_path(s3, "support") == tmp_path / "exports/support/records.sqlite"
    elsewhere = ExportSettings(dir="s3://bucket/prefix", store_dir=tmp_path / "stores")
    assert store_path(Settings(export=elsewhere), "f") == tmp_path / "stores/f/records.sqlite"
    local = Settings(stack_dir=tmp_path, export=ExportSettings(dir=tmp_path / "out"))
    assert store_path(local, "support") == tmp_path / "out/support/records.sqlite"

    secret = '{"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "endpoint_url": "http://x"}'
    with_options = ExportSettings(dir="s3://bucket/prefix", storage_options=secret)
    assert with_options.options()["secret"] == "s3cr3t-value"
    assert "s3cr3t" not in repr(with_options) and "s3cr3t" not in str(Settings(export=with_options))
    broken = ExportSettings(storage_options='{"secret": "s3cr3t-value"')  # not JSON
    with pytest.raises(ValueError, match="STORAGE_OPTIONS is not a JSON object") as error:
        broken.options()
    assert "s3cr3t" not in str(error.value)


def test_the_export_dir_and_options_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_EXPORT__DIR", "s3://bucket/exports")
    monkeypatch.setenv("LOOPLINE_EXPORT__STORE_DIR", str(tmp_path / "stores"))
    monkeypatch.setenv("LOOPLINE_EXPORT__STORAGE_OPTIONS", '{"anon": false}')
    settings = Settings()
    assert settings.export_dir == "s3://bucket/exports"
    assert settings.export.stores(settings.stack_dir) == tmp_path / "stores"
    assert settings.export.options() == {"anon": False}
