"""Pushing a version to the Hugging Face Hub (flows with `export.push_to_hub`): one commit per
version, uploading only what the repo does not have yet.

The repo mirrors the flow's export directory: each format in a folder of its own
(`<format>/shards/...`, `<format>/v<N>/manifest.json`) and at the root a dataset card whose
configurations are the formats' own (their directories' cards, `card`), named after the
format: `<format>` for its latest version (its `default`), `<format>-v<N>` for version N, and
`<format>-<table>`, `<format>-v<N>-<table>` for `eval`'s tables; a repo holding one format has
its latest as `default` too. So `load_dataset("my-org/support", "dpo-v3")` loads dpo's v3.

A commit uploads what the card's configurations and the versions' manifests need and the repo
lacks, and the card. Shards are named by their content, so a path the repo has holds the same
bytes: one listing of the repo's files decides. When each version is pushed in turn, that is
the version's new shards (the buckets it rewrote), its manifest and the card; a version whose
push was refused, or a format pushed for the first time, is caught up by the next push.
(huggingface_hub would also skip a file whose content the repo has, by its sha256, but only
after reading and hashing it: the path check keeps a push from reading the unchanged shards.)
Nothing is deleted from the repo: a version that retention removed leaves the card, its files
stay in the repo. The Hub's trouble is told from its refusal (see `push_version`), so that the
service retries only what retrying can fix.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from fsspec.core import url_to_fs  # type: ignore[import-untyped]
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

try:  # the HTTP client huggingface_hub uses: httpx2 from its 2.x line, httpx before
    from httpx2 import HTTPError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import HTTPError  # type: ignore[assignment]

from services.exporter.card import CARD, DEFAULT_CONFIG, card_configs
from services.exporter.storage import MANIFEST, VersionStorage, join, versions_of
from shared.dead_letters import DeadLetters
from shared.failures import PermanentError, TransientError
from shared.flows import HubTarget
from shared.settings import Settings

if TYPE_CHECKING:
    from services.exporter.export import ExportResult

log = logging.getLogger("loopline.exporter")

REPO_TYPE = "dataset"
_FORMAT_OF_MANIFEST = re.compile(rf"^([^/]+)/v\d+/{re.escape(MANIFEST)}$")


class HubApi(Protocol):
    """The calls of `huggingface_hub.HfApi` a push makes (tests give a stand-in)."""

    def create_repo(
        self, repo_id: str, *, repo_type: str | None, private: bool | None, exist_ok: bool
    ) -> object: ...

    def list_repo_files(self, repo_id: str, *, repo_type: str | None) -> list[str]: ...

    def create_commit(
        self,
        repo_id: str,
        operations: Iterable[Any],
        *,
        commit_message: str,
        repo_type: str | None,
    ) -> object: ...


def connect(token: str) -> HubApi:
    """The Hub client of a push, with the token it pushes with."""
    return HfApi(token=token)


def hub_configs(format_name: str, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A format's configurations (its card's) as the repo's card has them: named after the
    format, paths inside its folder."""
    found = []
    for config in configs:
        name = str(config["config_name"])
        files = []
        for entry in config["data_files"]:
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            files.append({"split": entry["split"], "path": [f"{format_name}/{p}" for p in paths]})
        renamed = format_name if name == DEFAULT_CONFIG else f"{format_name}-{name}"
        found.append({"config_name": renamed, "data_files": files})
    return found


def hub_card(title: str, formats: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The repo's README.md: every format's configurations (`hub_configs`), formats by name;
    with one format, its latest as `default` too."""
    found: list[dict[str, Any]] = []
    for name in sorted(formats):
        found += hub_configs(name, formats[name])
    if len(formats) == 1:
        [(only, configs)] = formats.items()
        latest = [c for c in configs if c["config_name"] == DEFAULT_CONFIG]
        found = [{**c, "config_name": DEFAULT_CONFIG} for c in hub_configs(only, latest)] + found
    front = yaml.safe_dump({"configs": found}, sort_keys=False, allow_unicode=True)
    names = [c["config_name"] for c in found]
    loading = "".join(f'load_dataset("<this repo>", "{name}")\n' for name in names[:4])
    return (
        f"---\n{front}---\n\n# {title}\n\nExported by Loopline, one folder per format. Each "
        "version `v<N>` of a format is a configuration `<format>-v<N>` (its tables, if any, "
        "`<format>-v<N>-<table>`); the latest is also `<format>`. Rows are in Parquet shards "
        "under `<format>/shards/`, shared by the versions that did not change them; "
        "`<format>/v<N>/manifest.json` has the rows per split, the source offsets, the schema "
        "and the shards with their checksums.\n\n"
        f"```python\nfrom datasets import load_dataset\n\n{loading}```\n"
    )


def wanted_files(storage: VersionStorage) -> tuple[list[dict[str, Any]], set[str]] | None:
    """A format's configurations (its card's) and the files they and its versions' manifests
    need, relative to its directory; None for a format with no card (no version)."""
    text = storage.read_text(CARD)
    if text is None:
        return None
    configs = card_configs(text)
    files = {f"v{n}/{MANIFEST}" for n in storage.numbers()}
    for config in configs:
        for entry in config["data_files"]:
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            files.update(str(p) for p in paths)
    return configs, files


def push_version(settings: Settings, hub: HubTarget, result: ExportResult) -> bool:
    """Push the version as one commit (see the module); False when no token is configured
    (logged: nothing to retry until one is).

    Raises `TransientError` for the Hub's trouble, which retrying fixes (connection errors,
    timeouts, 5xx, 429), and `PermanentError` for its refusal (a bad token, no such repo or no
    right to it), which it cannot: the caller retries the one and gives up on the other.
    """
    token = settings.export.hf_token
    name = f"{result.flow}/{result.format} v{result.version}"
    if token is None:
        log.error("%s not pushed to %s: set LOOPLINE_EXPORT__HF_TOKEN", name, hub.repo_id)
        return False
    try:
        api = connect(token.get_secret_value())
        api.create_repo(hub.repo_id, repo_type=REPO_TYPE, private=hub.private, exist_ok=True)
        there = set(api.list_repo_files(hub.repo_id, repo_type=REPO_TYPE))
        in_repo = {m.group(1) for m in map(_FORMAT_OF_MANIFEST.match, there) if m}
        configs: dict[str, list[dict[str, Any]]] = {}
        uploads: dict[str, tuple[VersionStorage, str]] = {}  # repo path -> (its format, file)
        for format_name in sorted(in_repo | {result.format}):
            storage = versions_of(settings, result.flow, format_name)
            wanted = wanted_files(storage)
            if wanted is None:  # no version of it on disk any more
                continue
            configs[format_name], files = wanted
            for file in sorted(files):
                if f"{format_name}/{file}" not in there:
                    uploads[f"{format_name}/{file}"] = (storage, file)
        card = hub_card(result.flow, configs).encode()
        with tempfile.TemporaryDirectory(prefix="loopline-hub-") as tmp:
            operations = [CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card)]
            for k, (path_in_repo, (storage, file)) in enumerate(sorted(uploads.items())):
                local = _local_file(settings, storage, file, Path(tmp) / str(k))
                operations.append(
                    CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local))
                )
            api.create_commit(
                hub.repo_id,
                operations,
                commit_message=f"Loopline {name}",
                repo_type=REPO_TYPE,
            )
    except HfHubHTTPError as exc:  # the Hub answered
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(f"pushing {name} to {hub.repo_id}: {exc}") from exc
        raise PermanentError(f"the Hub refused {name} for {hub.repo_id}: {exc}") from exc
    except (HTTPError, OSError) as exc:  # no answer: connection, timeout; or the disk
        raise TransientError(f"pushing {name} to {hub.repo_id}: {exc}") from exc
    log.info("pushed %s to %s (%d new files and the card)", name, hub.repo_id, len(uploads))
    return True


def _local_file(settings: Settings, storage: VersionStorage, file: str, spare: Path) -> Path:
    """A file of the format's directory on local disk: where it is, or fetched from a URL
    into `spare`."""
    where = storage.location()
    if isinstance(where, Path):
        return where / file
    fs, remote = url_to_fs(str(join(where, file)), **settings.export.options())
    fs.get_file(remote, str(spare))
    return spare


async def push_until_done(
    settings: Settings, hub: HubTarget, result: ExportResult, retries: DeadLetters
) -> bool:
    """`push_version` with the Hub's trouble retried for as long as it lasts; a refusal (or a
    failure that persists past the retry attempts) is logged: the version stays on disk."""
    what = f"pushing {result.flow}/{result.format} v{result.version} to {hub.repo_id}"
    try:
        pushed: bool = await retries.with_retries(
            partial(asyncio.to_thread, push_version, settings, hub, result), what
        )
    except Exception as exc:
        log.error("%s failed, not retried: %s (the version stays on disk)", what, exc)
        return False
    return pushed
