"""Whether a process id belongs to a running process (zombies count as dead)."""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def process_state(pid: int) -> str | None:
    """The one-letter state `/proc/<pid>/stat` gives (R, S, Z, ...), None when it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def pid_running(pid: int) -> bool:
    """True if `pid` is a live process (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in ("Z", "X")
