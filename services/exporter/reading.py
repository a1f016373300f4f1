"""Reading an exported version back: its manifest, its Parquet files, its rows.

A version is named by its directory or URL, `<export dir>/<flow>/<format>/v<N>` (what
`datasets.exported` announces as `location`); its files are the shards its manifest lists,
relative to the format's directory (`manifests`). With `datasets` alone, a local format
directory (or a Hub repo holding one) loads a version in one line through its card:
`load_dataset("<export dir>/<flow>/<format>", "v<N>")` (`card`). The functions here do the
same from any location, a URL included (`storage_options`: the filesystem's options).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]
from datasets import Dataset, DatasetDict, Features, load_dataset

from services.exporter.manifests import manifest_files
from services.exporter.storage import MANIFEST, Location


def format_location(version: Location) -> Location:
    """The format's directory or URL of a version's."""
    if isinstance(version, Path):
        return version.parent
    return version.rstrip("/").rsplit("/", 1)[0]


def read_version_manifest(
    version: Location, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The version's `manifest.json`."""
    if isinstance(version, Path):
        text = (version / MANIFEST).read_text(encoding="utf-8")
    else:
        with fsspec.open(f"{version.rstrip('/')}/{MANIFEST}", "rt", **(storage_options or {})) as f:
            text = f.read()
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def version_files(
    version: Location, storage_options: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """Per split with rows, the paths (or URLs) of the version's Parquet files, in order."""
    manifest = read_version_manifest(version, storage_options)
    root = format_location(version)
    return {
        split: [str(root / name) if isinstance(root, Path) else f"{root}/{name}" for name in names]
        for split, names in manifest_files(manifest).items()
    }


def load_version(version: Location, storage_options: dict[str, Any] | None = None) -> DatasetDict:
    """Every split of the version, those without rows too (empty, with the manifest's
    schema)."""
    manifest = read_version_manifest(version, storage_options)
    files = version_files(version, storage_options)
    loaded = DatasetDict()
    for split in manifest["rows"]:
        if split in files:  # each split alone: `eval`'s tables have schemas of their own
            options = dict(storage_options) if storage_options is not None else None
            found = load_dataset(
                "parquet", data_files=files[split], split="train", storage_options=options
            )
            assert isinstance(found, Dataset)
            loaded[split] = found
        else:
            features = Features.from_dict(manifest["schema"][split])
            loaded[split] = Dataset.from_dict({name: [] for name in features}, features=features)
    return loaded
