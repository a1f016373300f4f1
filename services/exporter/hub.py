"""Pushing a written version to the Hugging Face Hub (flows with `export.push_to_hub`).

The version goes up in the configurations of its card (`versions.config_splits`): a training
format's splits with rows as the `default` configuration, each `eval` table as a configuration
of its own (`load_dataset(repo_id, "win_rates")`). Splits without rows stay behind, since
`datasets` cannot load an empty split.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from datasets import DatasetDict

from services.exporter.versions import DEFAULT_CONFIG, config_splits
from shared.flows import HubTarget
from shared.settings import Settings

if TYPE_CHECKING:
    from services.exporter.export import ExportResult

log = logging.getLogger("loopline.exporter")


def push_version(settings: Settings, hub: HubTarget, result: ExportResult) -> bool:
    """Push the version's DatasetDict; a failure is logged (the version stays on disk)."""
    token = settings.export.hf_token
    if token is None:
        log.error(
            "%s/%s v%d not pushed to %s: set LOOPLINE_EXPORT__HF_TOKEN",
            result.flow,
            result.format,
            result.version,
            hub.repo_id,
        )
        return False
    message = f"Loopline {result.flow}/{result.format} v{result.version}"
    try:
        on_disk = DatasetDict.load_from_disk(str(result.path))
        with_rows = [split for split, n in result.rows.items() if n]
        for config, splits in config_splits(with_rows).items():
            DatasetDict(
                {hub_split: on_disk[split] for hub_split, split in splits.items()}
            ).push_to_hub(
                hub.repo_id,
                config_name=config,
                token=token.get_secret_value(),
                private=hub.private,
                commit_message=message if config == DEFAULT_CONFIG else f"{message}: {config}",
            )
    except Exception as exc:  # the Hub's trouble: the version is safe on disk
        log.error("pushing %s to %s failed: %s", result.path, hub.repo_id, exc)
        return False
    log.info("pushed %s/%s v%d to %s", result.flow, result.format, result.version, hub.repo_id)
    return True
