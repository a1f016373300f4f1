"""Turning a directory read-only for a while, as a full or remounted disk would be.

As an ordinary user: every directory and file below it loses its write bits (restored after).
As root, write bits do not stop anyone: the directory is bind-mounted onto itself read-only
(EROFS for every new file, directory or rename below it; files already open keep working, as
with a disk remounted read-only), and unmounted after (detached, if something below it is open).
The remount keeps the flags the mount already has (nosuid, nodev, ...): inside a container those
can be locked, and a remount that drops them is refused.

Where no mount can be made (no CAP_SYS_ADMIN), `ReadOnlyUnavailable` says why; the chaos driver
reports the attack as not made instead of failing the run on the machine's limits.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _tree(root: Path) -> Iterator[Path]:
    yield root
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            yield Path(folder) / name


@contextmanager
def _without_write_bits(root: Path) -> Iterator[None]:
    modes = {path: path.stat().st_mode for path in _tree(root)}
    for path, mode in modes.items():
        path.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for path in _tree(root):
            mode = modes.get(path, path.stat().st_mode)
            path.chmod(stat.S_IMODE(mode) | stat.S_IWUSR)


class ReadOnlyUnavailable(RuntimeError):
    """This machine does not let the directory be made read-only (the message says why)."""


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, command, done.stdout, f"{' '.join(command)}: {done.stderr.strip()}"
        )
    return done.stdout


def _kept_flags(target: str) -> list[str]:
    """The per-mount flags of the mount at `target`, but its rw (nosuid, nodev, noexec, ...)."""
    options = _run("findmnt", "--noheadings", "--output", "VFS-OPTIONS", "--mountpoint", target)
    return [flag for flag in options.strip().split(",") if flag and flag not in ("rw", "ro")]


@contextmanager
def _read_only_mount(root: Path) -> Iterator[None]:
    target = str(root.resolve())
    try:
        _run("mount", "--bind", target, target)
    except subprocess.CalledProcessError as error:
        raise ReadOnlyUnavailable(error.stderr) from error
    try:
        try:
            _run("mount", "-o", ",".join(["remount", "bind", "ro", *_kept_flags(target)]), target)
        except subprocess.CalledProcessError as error:
            raise ReadOnlyUnavailable(error.stderr) from error
        yield
    finally:
        # A service may hold a file open below it (a lock it waits on): the mount is then busy,
        # and it is detached instead; what was opened through it keeps working until closed.
        try:
            _run("umount", target)
        except subprocess.CalledProcessError:
            _run("umount", "--lazy", target)


@contextmanager
def read_only(root: Path) -> Iterator[str]:
    """`root` read-only inside the block; yields how (for the report)."""
    if os.geteuid() != 0:
        with _without_write_bits(root):
            yield "write bits removed"
    else:
        with _read_only_mount(root):
            yield "bind-mounted read-only"


def writable(root: Path) -> bool:
    """Whether a new file can be created in `root` right now."""
    probe = root / f".chaos-probe-{os.getpid()}"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True
