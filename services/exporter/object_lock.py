"""A lock held as an object in a filesystem without file locks (S3 and other object stores).

The lock is one small object, created only if it is absent (S3's `If-None-Match: *`, fsspec's
`pipe_file(..., mode="create")`), holding who took it and until when (a lease). Its holder
renews the lease while it works and deletes the object when done. A waiter polls; it breaks
the lock of a holder that is gone: one on this machine whose process no longer runs, or one
whose lease ran out (a crashed writer elsewhere). A holder whose lease was broken finds out at
its next renewal (`LockLostError`) and stops before it publishes anything.

It needs a store that honours conditional writes (AWS S3, SeaweedFS, MinIO, fsspec's memory
filesystem); on one that ignores them, two writers can both believe they hold it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from shared.pids import pid_running

log = logging.getLogger("loopline.exporter")

LEASE_S = 300.0  # a lock not renewed for this long belongs to a writer that is gone
RENEW_EVERY_S = 30.0
POLL_S = 0.25


class LockLostError(RuntimeError):
    """The lease ran out and another writer took the lock: stop before publishing."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str
    expires: float  # Unix time, by the holder's clock

    def gone(self, now: float) -> bool:
        """Its lease ran out, or it ran on this machine and its process is dead."""
        here = self.host == socket.gethostname()
        return now > self.expires or (here and not pid_running(self.pid))


def create_if_absent(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write `path` only if it does not exist; False when it did (nothing written)."""
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError:
        # A refusal s3fs does not recognise as one (a 412 without the condition named).
        if fs.exists(path):
            return False
        raise
    return True


class ObjectLock:
    """The lock at `path` of `fs`; a context manager, `renew` while holding it."""

    def __init__(self, fs: AbstractFileSystem, path: str, lease_s: float = LEASE_S) -> None:
        self.fs = fs
        self.path = path
        self.lease_s = lease_s
        self.token = ""
        self._renewed = 0.0

    def _body(self) -> bytes:
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "expires": time.time() + self.lease_s,
        }
        return json.dumps(holder, sort_keys=True).encode()

    def holder(self) -> Holder | None:
        """Who holds it now, None when nobody (or an unreadable object: treated as gone)."""
        try:
            raw: dict[str, Any] = json.loads(self.fs.cat_file(self.path))
            return Holder(str(raw["host"]), int(raw["pid"]), str(raw["token"]), raw["expires"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return Holder("", 0, "", 0.0)

    def acquire(self) -> None:
        self.token = os.urandom(8).hex()
        while True:
            if create_if_absent(self.fs, self.path, self._body()):
                self._renewed = time.monotonic()
                return
            holder = self.holder()
            if holder is None:
                continue  # released meanwhile
            if holder.gone(time.time()):
                log.warning(
                    "breaking the lock %s of a writer that is gone (%s, pid %d)",
                    self.path,
                    holder.host or "unreadable",
                    holder.pid,
                )
                self.fs.rm_file(self.path)
                continue
            time.sleep(POLL_S)

    def check(self) -> None:
        """Raise `LockLostError` unless this writer still holds the lock."""
        holder = self.holder()
        if holder is None or holder.token != self.token:
            raise LockLostError(f"the lock {self.path} was taken over: its lease ran out")

    def renew(self) -> None:
        """Extend the lease (at most every RENEW_EVERY_S); `LockLostError` if it was lost."""
        if time.monotonic() - self._renewed < RENEW_EVERY_S:
            return
        self.check()
        self.fs.pipe_file(self.path, self._body())
        self._renewed = time.monotonic()

    def release(self) -> None:
        holder = self.holder()
        if holder is not None and holder.token == self.token:
            self.fs.rm_file(self.path)

    def __enter__(self) -> ObjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
