"""Pushing a written version to the Hugging Face Hub (flows with `export.push_to_hub`).

The version goes up in the configurations of its card (`versions.config_splits`): a training
format's splits with rows as the `default` configuration, each `eval` table as a configuration
of its own (`load_dataset(repo_id, "win_rates")`). Splits without rows stay behind, since
`datasets` cannot load an empty split. The Hub's trouble is told from its refusal (see
`push_version`), so that the service retries only what retrying can fix.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from datasets import DatasetDict
from huggingface_hub.errors import HfHubHTTPError

try:  # the HTTP client huggingface_hub uses: httpx2 from its 2.x line, httpx before
    from httpx2 import HTTPError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import HTTPError  # type: ignore[assignment]

from services.exporter.reading import load_version
from services.exporter.storage import reader_options
from services.exporter.versions import DEFAULT_CONFIG, config_splits
from shared.dead_letters import DeadLetters
from shared.failures import PermanentError, TransientError
from shared.flows import HubTarget
from shared.settings import Settings

if TYPE_CHECKING:
    from services.exporter.export import ExportResult

log = logging.getLogger("loopline.exporter")


def push_version(settings: Settings, hub: HubTarget, result: ExportResult) -> bool:
    """Push the version's rows; False when no token is configured (logged: nothing to
    retry until one is).

    Raises `TransientError` for the Hub's trouble, which retrying fixes (connection errors,
    timeouts, 5xx, 429), and `PermanentError` for its refusal (a bad token, no such repo or no
    right to it), which it cannot: the caller retries the one and gives up on the other.
    """
    token = settings.export.hf_token
    name = f"{result.flow}/{result.format} v{result.version}"
    if token is None:
        log.error("%s not pushed to %s: set LOOPLINE_EXPORT__HF_TOKEN", name, hub.repo_id)
        return False
    message = f"Loopline {name}"
    try:
        options = reader_options(settings, result.path)
        on_disk = load_version(result.path, storage_options=options)
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
    except HfHubHTTPError as exc:  # the Hub answered
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            raise TransientError(f"pushing {name} to {hub.repo_id}: {exc}") from exc
        raise PermanentError(f"the Hub refused {name} for {hub.repo_id}: {exc}") from exc
    except (HTTPError, OSError) as exc:  # no answer: connection, timeout; or the disk
        raise TransientError(f"pushing {name} to {hub.repo_id}: {exc}") from exc
    log.info("pushed %s to %s", name, hub.repo_id)
    return True


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
