"""The Loopline record stored with each Argilla record, and how to read it back.

The publisher stores the whole record as JSON in the extra metadata `loopline_record` (Argilla
shows extra metadata to owners and workspace admins only, not to annotators); the feedback
collector rebuilds it from there. Next to it, `loopline_traceparent` holds the record's W3C
trace context, so the collector's spans for its answers join the record's trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.events import Record

RECORD_METADATA_KEY = "loopline_record"
TRACE_METADATA_KEY = "loopline_traceparent"


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


def trace_from_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """The record's W3C `traceparent` the publisher stored, if any."""
    stored = (metadata or {}).get(TRACE_METADATA_KEY)
    return stored if isinstance(stored, str) else None
