"""Pushing a written version to the Hugging Face Hub (flows with `export.push_to_hub`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from datasets import DatasetDict

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
    try:
        DatasetDict.load_from_disk(str(result.path)).push_to_hub(
            hub.repo_id,
            token=token.get_secret_value(),
            private=hub.private,
            commit_message=f"Loopline {result.flow}/{result.format} v{result.version}",
        )
    except Exception as exc:  # the Hub's trouble: the version is safe on disk
        log.error("pushing %s to %s failed: %s", result.path, hub.repo_id, exc)
        return False
    log.info("pushed %s/%s v%d to %s", result.flow, result.format, result.version, hub.repo_id)
    return True
