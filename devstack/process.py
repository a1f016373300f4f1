"""Pid files, detached starts and whole-group stops of the stack's server processes.

Every server runs in its own session (so its own process group, whose id is its pid) and
outlives the command that started it. A pid file holds the pid and the process start time,
so a pid reused by an unrelated process is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.pids import pid_running

_PROC = Path("/proc")
# Popen objects of the servers this process started, kept so that they are reaped (no zombies)
# and so that Python does not warn about children still running when the object is collected.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: the pid, where the OS tells it the process start time, and the
    fingerprint of the command and settings it was started with."""

    pid: int
    started: int | None
    fingerprint: str | None = None

    def alive(self) -> bool:
        return is_alive(self.pid) and (self.started is None or self.started == start_time(self.pid))


def start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def is_alive(pid: int) -> bool:
    """True if `pid` runs; zombies count as dead (and our own children get reaped)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    return pid_running(pid)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def write_pid_file(path: Path, pid: int, fingerprint: str | None = None) -> None:
    """Record `pid` (with its start time and, optionally, its settings' fingerprint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = start_time(pid)
    fields = [str(pid), str(started) if started is not None else "-"]
    if fingerprint is not None:
        fields.append(fingerprint)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(" ".join(fields) + "\n")
    tmp.replace(path)


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        parts = path.read_text().split()
    except FileNotFoundError:
        return None
    if not parts or not parts[0].isdigit():
        return None
    started = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    fingerprint = parts[2] if len(parts) > 2 else None
    return PidRecord(int(parts[0]), started, fingerprint)


def spawn(
    command: Sequence[str],
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> int:
    """Start `command` detached in its own session, output appended to `log_path`; its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = datetime.now().isoformat(timespec="seconds")
        log.write(f"\n=== {stamp} starting: {' '.join(command)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _children[child.pid] = child
    return child.pid


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _gone(pgid: int) -> bool:
    return not is_alive(pgid) and not group_members(pgid)


def _wait_gone(pgids: Iterable[int], timeout_s: float) -> list[int]:
    """Wait until every group is gone; the groups still alive at the deadline."""
    left = list(pgids)
    deadline = time.monotonic() + timeout_s
    while left:
        left = [pgid for pgid in left if not _gone(pgid)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return left


def owns_group(record: PidRecord) -> bool:
    """True if the group of this pid file still has processes that are ours to stop."""
    if record.alive():
        return True
    # The leader is gone. Its group id cannot be reused while members remain, so any
    # remaining member is a grandchild of the server we started.
    return not is_alive(record.pid) and bool(group_members(record.pid))


def stop_groups(records: Iterable[PidRecord], timeout_s: float) -> None:
    """SIGTERM each group, then SIGKILL whatever is left after `timeout_s`."""
    pgids = [record.pid for record in records if owns_group(record)]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    left = _wait_gone(pgids, timeout_s)
    for pgid in left:
        _signal_group(pgid, signal.SIGKILL)
    _wait_gone(left, 5.0)


def port_in_use(host: str, port: int) -> bool:
    """True if something already listens on host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
