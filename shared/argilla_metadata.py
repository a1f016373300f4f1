"""The Loopline record stored with each Argilla record, and how to read it back.

The publisher stores the whole record as JSON in the extra metadata `loopline_record` (Argilla
shows extra metadata to owners and workspace admins only, not to annotators); the feedback
collector rebuilds it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.events import Record

RECORD_METADATA_KEY = "loopline_record"


def record_from_metadata(metadata: Mapping[str, Any] | None) -> Record:
    """The Loopline record stored in an Argilla record's metadata.

    Raises `KeyError` when the metadata has none and pydantic's `ValidationError` (a
    `ValueError`) when what is stored is not a valid record.
    """
    try:
        stored = (metadata or {})[RECORD_METADATA_KEY]
    except KeyError:
        raise KeyError(f"the Argilla record has no {RECORD_METADATA_KEY!r} metadata") from None
    if isinstance(stored, str):
        return Record.model_validate_json(stored)
    return Record.model_validate(stored)
