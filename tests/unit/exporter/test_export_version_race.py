"""Two exports of one flow at once (the service's and `loopline export`'s, say): whether a
format's data is unchanged since its latest version is decided under the lock that numbers the
versions, so the same data never makes two versions and the latest version is always the data
of the last export to finish."""

import fcntl
import threading
from pathlib import Path
from typing import Any

import pytest

from services.exporter.export import format_dir
from services.exporter.report import write_report as real_report
from services.exporter.versions import versions
from shared.settings import Settings
from tests.unit.exporter.test_export_versions import export_all, fill, flows_config


def test_two_exports_of_the_same_data_at_once_make_one_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(stack_dir=tmp_path)
    flows = flows_config(formats=[{"plugin": "sft"}])
    fill(settings, flows, n=10)

    inner_results: list[dict[str, Any]] = []
    inner_progressed = threading.Event()  # it waits for the lock, or it is done

    def run_inner() -> None:
        try:
            inner_results.append(export_all(settings, flows))
        finally:
            inner_progressed.set()

    inner = threading.Thread(target=run_inner)
    real_flock = fcntl.flock

    def flock(fd: Any, operation: int) -> None:
        if threading.current_thread() is inner and operation == fcntl.LOCK_EX:
            inner_progressed.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)

    def write_report(*args: Any) -> None:
        # The first export has its data and is about to commit it: a second export of the
        # same records runs until it is done or waits for the version lock.
        if threading.current_thread() is threading.main_thread() and inner.ident is None:
            inner.start()
            assert inner_progressed.wait(timeout=120)
        real_report(*args)

    monkeypatch.setattr("services.exporter.export.write_report", write_report)
    outer = export_all(settings, flows)["sft"]
    inner.join(timeout=120)
    [inner_sft] = [r["sft"] for r in inner_results]

    assert versions(format_dir(settings, "support", "sft")) == [1]
    assert sorted([outer.created, inner_sft.created]) == [False, True]
    assert outer.version == inner_sft.version == 1
    assert outer.rows == inner_sft.rows
