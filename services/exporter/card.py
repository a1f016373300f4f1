"""The dataset card of a format's directory: every version as a configuration of `datasets`.

`<flow>/<format>/README.md` starts with YAML front matter whose `configs:` say which Parquet
files make which split of which configuration, as on the Hub, so `load_dataset(<format dir>,
"v3")` (or the same on a Hub repo holding the directory) loads version 3:

* the splits `train`, `validation` and `test` form a version's main configuration, `v<N>`;
  any other split is a table of its own (`eval`'s `scores` and `win_rates`): a configuration
  `v<N>-<table>` whose one split is `train`;
* the latest version's configurations are there a second time under the plain names:
  `default` (what `load_dataset(<format dir>)` loads) and `<table>` (`scores`, `win_rates`);
* a split without rows is left out (`datasets` cannot load an empty split), and so is a
  configuration without any. The paths are relative to the format's directory.

It names the newest `CARD_VERSIONS` versions: a stream makes versions without end, and a card
naming every one would grow with each (and be rewritten, its versions' manifests read, with
each). An older version loads from its manifest (`reading.load_version`).

The card is drawn from the manifests alone, newest version first: the same versions give the
same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from services.exporter.manifests import manifest_files

CARD = "README.md"
# Split names `datasets` knows: they make up one configuration; any other split is a table.
SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_CONFIG = "default"
CARD_VERSIONS = 10  # the newest versions a card names


def config_splits(splits: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per configuration, its splits as `datasets` names them -> the version's split names:
    `train`, `validation` and `test` make up `default`; any other split is a table, a
    configuration of its own whose one split is `train`."""
    found: dict[str, dict[str, str]] = {}
    for split in splits:
        config, hub_split = (DEFAULT_CONFIG, split) if split in SPLIT_NAMES else (split, "train")
        found.setdefault(config, {})[hub_split] = split
    return found


def version_config_name(number: int, config: str) -> str:
    """`v3` for a version's main configuration, `v3-win_rates` for one of its tables."""
    return f"v{number}" if config == DEFAULT_CONFIG else f"v{number}-{config}"


def version_configs(
    files: Mapping[str, Sequence[str]], number: int | None = None
) -> list[dict[str, Any]]:
    """The configurations of one version's files (split -> paths): named as `config_splits`
    says, or as version `number`'s (`version_config_name`)."""
    with_rows = [split for split, paths in files.items() if paths]
    return [
        {
            "config_name": config if number is None else version_config_name(number, config),
            "data_files": [
                {"split": hub_split, "path": list(files[split])}
                for hub_split, split in splits.items()
            ],
        }
        for config, splits in config_splits(with_rows).items()
    ]


def format_card(title: str, manifests: Sequence[Mapping[str, Any]]) -> str:
    """The format directory's README.md for its versions (their manifests, any order; the
    newest `CARD_VERSIONS` of them are named)."""
    ordered = sorted(manifests, key=lambda m: int(m["version"]), reverse=True)[:CARD_VERSIONS]
    found: list[dict[str, Any]] = []
    if ordered:
        found += version_configs(manifest_files(ordered[0]))
    for manifest in ordered:
        found += version_configs(manifest_files(manifest), int(manifest["version"]))
    front = yaml.safe_dump({"configs": found}, sort_keys=False, allow_unicode=True)
    names = [c["config_name"] for c in found]
    loading = "".join(f'load_dataset(path, "{name}")\n' for name in names[:4])
    if DEFAULT_CONFIG in names:
        loading = f"load_dataset(path)  # the latest version\n{loading}"
    return (
        f"---\n{front}---\n\n# {title}\n\nExported by Loopline. Each version `v<N>` is a "
        "configuration of this card (its tables, if any, `v<N>-<table>`); the latest is also "
        "`default` (its tables under their own names). Rows are in Parquet shards under "
        "`shards/`, shared by the versions they did not change. `v<N>/manifest.json` has the "
        "rows per split, the source offsets, the schema and the shards with their checksums, "
        "`v<N>/report.html` the curation report. Splits without rows are left out. The card "
        f"names the newest {CARD_VERSIONS} versions; an older one that is still kept loads from "
        'its manifest\'s files (`load_dataset("parquet", data_files=...)`).\n\n'
        "```python\nfrom datasets import load_dataset\n\n"
        f'path = "<this directory>"\n{loading}```\n'
    )


def card_configs(text: str) -> list[dict[str, Any]]:
    """The configurations a card declares."""
    front: dict[str, Any] = yaml.safe_load(text.split("---\n", 2)[1])
    found: list[dict[str, Any]] = front["configs"]
    return found
