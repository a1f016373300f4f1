"""Where the exporter's versions go: a local directory or an fsspec URL. The one module that
knows; the rest of the exporter writes a version into a local directory (`VersionStorage.stage`)
and hands it over (`publish`).

A format's versions live under `<export dir>/<flow>/<format>/`: their shared Parquet shards
in `shards/` (`versions`), each version's manifest and report in `v<N>/`, and the dataset card
`README.md` listing them (`card`). A version exists once its `manifest.json` does; a staged
version is a directory holding its new shards (`shards/...`) and its own files:

* **local** (`LocalVersions`): a version is written in a hidden directory beside the versions
  (`.tmp-<pid>-<random>`); its new shards are moved into `shards/` (one that is there already
  has the same bytes: it stays), then its manifest is written and the directory renamed to
  `v<N>` (atomic); the numbering happens under a lock file (flock). Leftovers of a writer that
  died are removed by the next export.
* **URL** (`RemoteVersions`: `s3://bucket/prefix`, any fsspec filesystem): object stores have
  no rename. A version is written on local disk first (a staging directory beside the flow's
  record store), then its new shards are uploaded (those not there yet), then its files under
  its own new prefix `v<N>/`, its `manifest.json` last, and the pointer `latest` (text:
  `v<N>`) is rewritten after it. Readers find versions by their manifests or the pointer,
  never by the data files, so they never see a half-written version, and an upload that fails
  midway leaves the previous version the latest. Numbering and upload happen under a lock
  object (`object_lock`); under it, a prefix without a manifest can only be the leftover of a
  failed upload: it is removed, and a pointer behind the newest manifest (a crash between the
  two) is set right.

Retention (`retention`) deletes versions through `retire`: a note of the shards the version
used goes to `.retired/v<N>.json`, then its manifest, then the rest of `v<N>/`; shards no
version lists any more (nor a version retired less than the grace period ago, nor any version:
what a crash between the shards and a manifest left) are removed with `remove_shard`, all under
the lock.

The record stores (SQLite) are not here: they need a local disk (`ExportSettings.stores`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]
from fsspec.core import url_to_fs  # type: ignore[import-untyped]

from services.exporter.card import CARD, CARD_VERSIONS, format_card
from services.exporter.object_lock import ObjectLock, create_if_absent
from services.exporter.shards import SHARDS_DIR
from shared.pids import pid_running
from shared.settings import Settings

log = logging.getLogger("loopline.exporter")

Location = Path | str  # a local directory, or a URL
MANIFEST = "manifest.json"
LATEST = "latest"  # a URL format directory's pointer to its newest version
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
RETIRED = ".retired"  # notes of deleted versions: which shards they used, and when
STAGING = ".staging"  # beside a flow's record store: versions on their way to a URL
VERSION_DIR = re.compile(r"^v(\d+)$")
_MANIFEST_PATH = re.compile(rf"^v(\d+)/{re.escape(MANIFEST)}$")


def json_bytes(value: Any) -> bytes:
    """JSON as every file of a version has it: sorted keys, indented, a final newline."""
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def is_url(location: Location) -> bool:
    return isinstance(location, str)


def join(location: Location, *parts: str) -> Location:
    if isinstance(location, Path):
        return location.joinpath(*parts)
    return "/".join([location.rstrip("/"), *parts])


class VersionStorage(ABC):
    """The versions of one flow's format, wherever their bytes go."""

    def __init__(self, flow: str, format_name: str) -> None:
        self.name = f"{flow} / {format_name}"  # the dataset card's title

    @abstractmethod
    def location(self, number: int | None = None) -> Location:
        """Version `number`'s directory or URL; the format's with None."""

    @abstractmethod
    def numbers(self) -> list[int]:
        """The versions published, ascending."""

    @abstractmethod
    def read_manifest(self, number: int) -> dict[str, Any]: ...

    def latest_manifest(self) -> dict[str, Any] | None:
        numbers = self.numbers()
        return self.read_manifest(numbers[-1]) if numbers else None

    def manifests(self) -> list[dict[str, Any]]:
        """Every published version's manifest, oldest first."""
        return [self.read_manifest(n) for n in self.numbers()]

    @abstractmethod
    def read_text(self, name: str) -> str | None:
        """A file of the format's directory (`name` relative to it), None when absent."""

    @abstractmethod
    def write_text(self, name: str, text: str) -> None:
        """Replace a file of the format's directory (readers see the old or the new)."""

    def refresh_card(self) -> bool:
        """Make the dataset card list the versions there are (after a version, a deletion, or
        a crash between a version and its card); True when it changed. Under `lock()`."""
        manifests = [self.read_manifest(n) for n in self.numbers()[-CARD_VERSIONS:]]
        if not manifests:
            return False
        text = format_card(self.name, manifests)
        if self.read_text(CARD) == text:
            return False
        self.write_text(CARD, text)
        return True

    @abstractmethod
    def stage(self) -> Path:
        """A new, empty local directory to write a version in."""

    @abstractmethod
    def publish(self, staged: Path, manifest: dict[str, Any]) -> tuple[int, Location]:
        """Make the staged version the next one, with `manifest` (and its number) written
        last; the caller holds `lock()`."""

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    @abstractmethod
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held (across processes) from the look at the latest version to the publication."""

    @abstractmethod
    def published_at(self, number: int) -> float:
        """When version `number` was published (its manifest's time, Unix seconds)."""

    @abstractmethod
    def retire(self, number: int, note: dict[str, Any]) -> None:
        """Delete version `number`, leaving `note` (the shards it used, when) in `.retired/`:
        its manifest first, so that readers stop finding it. Under `lock()`."""

    @abstractmethod
    def retired(self) -> list[dict[str, Any]]:
        """The notes of the versions retired and not forgotten yet."""

    @abstractmethod
    def forget_retired(self, number: int) -> None: ...

    @abstractmethod
    def shard_paths(self) -> list[str]:
        """Every file under `shards/`, relative to the format's directory."""

    @abstractmethod
    def remove_shard(self, path: str) -> None: ...

    @property
    def key(self) -> str:
        return str(self.location())


@contextlib.contextmanager
def versions_locked(storages: Sequence[VersionStorage]) -> Iterator[None]:
    """Hold the lock of each format's versions, taken in one order so that two holders never
    wait for each other. While it is held no version of these formats appears: what
    `latest_manifest` says stays true until `publish`."""
    with contextlib.ExitStack() as stack:
        for _, storage in sorted({s.key: s for s in storages}.items()):
            stack.enter_context(storage.lock())
        yield


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the staging directories in `folder` of writers that died (crashed exports)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if not path.name.startswith(TMP_PREFIX):
            continue
        pid_text = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and pid_running(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        log.warning("removed the leftovers of an interrupted export: %s", path.name)
    return removed


def _new_staging(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    staged = folder / f"{TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    staged.mkdir()
    return staged


class LocalVersions(VersionStorage):
    """Versions in a local directory, each made visible by a rename."""

    def __init__(self, format_dir: Path) -> None:
        super().__init__(format_dir.parent.name, format_dir.name)
        self.format_dir = format_dir

    def location(self, number: int | None = None) -> Path:
        return self.format_dir if number is None else self.format_dir / f"v{number}"

    def numbers(self) -> list[int]:
        if not self.format_dir.is_dir():
            return []
        found = (VERSION_DIR.match(p.name) for p in self.format_dir.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def read_manifest(self, number: int) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(
            (self.location(number) / MANIFEST).read_text(encoding="utf-8")
        )
        return manifest

    def stage(self) -> Path:
        return _new_staging(self.format_dir)

    def read_text(self, name: str) -> str | None:
        try:
            return (self.format_dir / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        path = self.format_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
        partial.write_text(text, encoding="utf-8")
        _fsync_file(partial)
        os.replace(partial, path)
        _fsync_dir(self.format_dir)

    def _place_shards(self, staged: Path) -> None:
        """Move the staged version's new shards into the format's `shards/`; a shard that is
        there already has the same bytes (its name says so) and stays as it is."""
        folder = staged / SHARDS_DIR
        if not folder.is_dir():
            return
        moved: set[Path] = set()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            target = self.format_dir / path.relative_to(staged)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
            moved.add(target.parent)
        for parent in sorted(moved):
            _fsync_dir(parent)
        _fsync_dir(self.format_dir / SHARDS_DIR)
        shutil.rmtree(folder)

    def publish(self, staged: Path, manifest: dict[str, Any]) -> tuple[int, Path]:
        _fsync_tree(staged)
        self._place_shards(staged)
        number = (self.numbers() or [0])[-1] + 1
        (staged / MANIFEST).write_bytes(json_bytes({**manifest, "version": number}))
        _fsync_file(staged / MANIFEST)
        final = self.location(number)
        os.rename(staged, final)
        _fsync_dir(self.format_dir)
        return number, final

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.format_dir.mkdir(parents=True, exist_ok=True)
        with open(self.format_dir / LOCK, "a+b") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)

    def published_at(self, number: int) -> float:
        return (self.location(number) / MANIFEST).stat().st_mtime

    def retire(self, number: int, note: dict[str, Any]) -> None:
        self.write_text(f"{RETIRED}/v{number}.json", json_bytes(note).decode())
        # Gone at once for readers (a rename); a crash before the removal leaves a directory
        # the next export's `remove_leftovers` takes away.
        gone = self.format_dir / f"{TMP_PREFIX}{os.getpid()}-retired-v{number}"
        os.rename(self.location(number), gone)
        _fsync_dir(self.format_dir)
        shutil.rmtree(gone)

    def retired(self) -> list[dict[str, Any]]:
        folder = self.format_dir / RETIRED
        if not folder.is_dir():
            return []
        found = (json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("v*.json")))
        return sorted(found, key=lambda note: int(note["version"]))

    def forget_retired(self, number: int) -> None:
        (self.format_dir / RETIRED / f"v{number}.json").unlink(missing_ok=True)

    def shard_paths(self) -> list[str]:
        folder = self.format_dir / SHARDS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.format_dir).as_posix() for p in folder.rglob("*.parquet"))

    def remove_shard(self, path: str) -> None:
        (self.format_dir / path).unlink(missing_ok=True)


class RemoteVersions(VersionStorage):
    """Versions under a URL: staged on local disk, uploaded, published by their manifest."""

    def __init__(
        self, url: str, flow: str, format_name: str, options: dict[str, Any], staging: Path
    ) -> None:
        super().__init__(flow, format_name)
        self.url = "/".join([url.rstrip("/"), flow, format_name])
        # Listings are not cached: other writers add versions meanwhile.
        fs, self.root = url_to_fs(self.url, **{"use_listings_cache": False, **options})
        self.fs: AbstractFileSystem = fs
        self.staging = staging
        self._lock: ObjectLock | None = None

    def location(self, number: int | None = None) -> str:
        return self.url if number is None else f"{self.url}/v{number}"

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _files(self) -> list[str]:
        """Every object under the format, relative to it (one listing)."""
        start = self.root.rstrip("/") + "/"
        return [p[len(start) :] for p in self.fs.find(self.root) if p.startswith(start)]

    def numbers(self) -> list[int]:
        found = (_MANIFEST_PATH.match(name) for name in self._files())
        return sorted(int(m.group(1)) for m in found if m)

    def read_manifest(self, number: int) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(self.fs.cat_file(self._path(f"v{number}", MANIFEST)))
        return manifest

    def read_text(self, name: str) -> str | None:
        try:
            text: bytes = self.fs.cat_file(self._path(name))
        except FileNotFoundError:
            return None
        return text.decode("utf-8")

    def write_text(self, name: str, text: str) -> None:
        self.fs.pipe_file(self._path(name), text.encode("utf-8"))

    def latest(self) -> int | None:
        """The version the pointer names (None before the first)."""
        try:
            text = self.fs.cat_file(self._path(LATEST)).decode().strip()
        except FileNotFoundError:
            return None
        found = VERSION_DIR.match(text)
        return int(found.group(1)) if found else None

    def stage(self) -> Path:
        return _new_staging(self.staging)

    def publish(self, staged: Path, manifest: dict[str, Any]) -> tuple[int, str]:
        assert self._lock is not None, "publish needs the lock"
        there = set(self._files())
        number = max((int(m.group(1)) for m in map(_MANIFEST_PATH.match, there) if m), default=0)
        prefix = f"v{number + 1}"
        # The new shards first (those not there yet: the same name is the same bytes), then
        # the version's own files, its manifest last.
        files = sorted(
            (p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()),
            key=lambda name: (not name.startswith(f"{SHARDS_DIR}/"), name),
        )
        for name in files:
            shard = name.startswith(f"{SHARDS_DIR}/")
            if shard and name in there:
                continue
            self._lock.renew()
            self.fs.put_file(
                str(staged / name), self._path(name) if shard else self._path(prefix, name)
            )
        self._lock.check()
        number += 1
        body = json_bytes({**manifest, "version": number})
        if not create_if_absent(self.fs, self._path(prefix, MANIFEST), body):
            raise FileExistsError(f"{self.location(number)} was published by another writer")
        self.fs.pipe_file(self._path(LATEST), f"{prefix}\n".encode())
        self.discard(staged)
        return number, self.location(number)

    def published_at(self, number: int) -> float:
        modified = self.fs.modified(self._path(f"v{number}", MANIFEST))
        return float(modified.timestamp())

    def retire(self, number: int, note: dict[str, Any]) -> None:
        assert self._lock is not None, "retire needs the lock"
        self.write_text(f"{RETIRED}/v{number}.json", json_bytes(note).decode())
        self.fs.rm_file(self._path(f"v{number}", MANIFEST))  # readers stop finding it
        self._lock.renew()
        self.fs.rm(self._path(f"v{number}"), recursive=True)

    def retired(self) -> list[dict[str, Any]]:
        start = f"{RETIRED}/"
        names = sorted(name for name in self._files() if name.startswith(start))
        found = (json.loads(self.fs.cat_file(self._path(name))) for name in names)
        return sorted(found, key=lambda note: int(note["version"]))

    def forget_retired(self, number: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(RETIRED, f"v{number}.json"))

    def shard_paths(self) -> list[str]:
        start = f"{SHARDS_DIR}/"
        return sorted(name for name in self._files() if name.startswith(start))

    def remove_shard(self, path: str) -> None:
        assert self._lock is not None, "removing a shard needs the lock"
        self._lock.renew()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(path))

    def _tidy(self) -> None:
        """Under the lock: remove what failed uploads left, set the pointer right."""
        files = self._files()
        published = {int(m.group(1)) for m in map(_MANIFEST_PATH.match, files) if m}
        prefixes = {name.split("/", 1)[0] for name in files if "/" in name}
        for prefix in sorted(prefixes):
            found = VERSION_DIR.match(prefix)
            if found and int(found.group(1)) not in published:
                log.warning("removing %s/%s: an upload that did not finish", self.url, prefix)
                self.fs.rm(self._path(prefix), recursive=True)
        newest = max(published, default=None)
        if newest is not None and self.latest() != newest:
            self.fs.pipe_file(self._path(LATEST), f"v{newest}\n".encode())

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with ObjectLock(self.fs, self._path(LOCK)) as held:
            self._lock = held
            try:
                self._tidy()
                yield
            finally:
                self._lock = None


def versions_of(settings: Settings, flow: str, format_name: str) -> VersionStorage:
    """The versions of a flow's format where the settings put them."""
    where = settings.export_dir
    if isinstance(where, Path):
        return LocalVersions(where / flow / format_name)
    staging = settings.export.stores(settings.stack_dir) / flow / STAGING / format_name
    return RemoteVersions(where, flow, format_name, settings.export.options(), staging)


def reader_options(settings: Settings, location: Location) -> dict[str, Any] | None:
    """The `storage_options` for reading a version at `location` (`datasets`' loaders)."""
    return settings.export.options() if is_url(location) else None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_file(Path(dirpath) / name)
        _fsync_dir(Path(dirpath))
