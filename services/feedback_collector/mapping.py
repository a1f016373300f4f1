"""From Argilla's objects (REST and webhook payloads) to Loopline events, and which datasets count.

Argilla's timestamps are naive UTC; they become aware here. Response values come as
`{question: {"value": v}}` and leave as `{question: v}`. The Loopline record travels in the
Argilla record's extra metadata `loopline_record` (its JSON, as the publisher wrote it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.argilla_metadata import RECORD_METADATA_KEY, record_from_metadata
from shared.events import AnnotatorResponse, CompletedRecord, Record, ResponseStatus
from shared.flows import FlowsConfig

log = logging.getLogger("loopline.feedback_collector")

COMPLETED = "completed"


def as_utc(moment: datetime) -> datetime:
    """Argilla sends naive UTC datetimes: make them aware (aware ones are converted)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class _ArgillaModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ArgillaResponse(_ArgillaModel):
    """A response as `/api/v1/records/...` lists it (the user by id)."""

    id: str
    values: dict[str, Any] | None = None
    status: str
    user_id: str
    updated_at: UtcDatetime


class ArgillaRecord(_ArgillaModel):
    """A record as the REST API returns it, with its responses when they were included."""

    id: str
    status: str = "pending"
    external_id: str | None = None
    metadata: dict[str, Any] | None = None
    responses: list[ArgillaResponse] = Field(default_factory=list)
    dataset_id: str | None = None
    updated_at: UtcDatetime


class ArgillaDataset(_ArgillaModel):
    id: str
    name: str
    workspace: str
    last_activity_at: UtcDatetime


# Webhook payloads: `{"type", "version", "timestamp", "data"}`; `data` is a record (record.*)
# or a response with its record and user (response.*), each with the dataset and its workspace.
class HookWorkspace(_ArgillaModel):
    id: str
    name: str


class HookDataset(_ArgillaModel):
    id: str
    name: str
    workspace: HookWorkspace


class HookRecord(_ArgillaModel):
    id: str
    status: str
    external_id: str | None = None
    metadata: dict[str, Any] | None = None
    dataset: HookDataset
    updated_at: UtcDatetime


class HookUser(_ArgillaModel):
    id: str
    username: str


class HookResponse(_ArgillaModel):
    id: str
    values: dict[str, Any] | None = None
    status: str
    record: HookRecord
    user: HookUser
    updated_at: UtcDatetime


class WebhookEnvelope(_ArgillaModel):
    type: str
    version: int = 1
    timestamp: datetime
    data: dict[str, Any]


def flatten_values(values: dict[str, Any] | None) -> dict[str, Any]:
    """`{question: {"value": v}}` -> `{question: v}`; a discarded response's `None` -> `{}`."""
    flat: dict[str, Any] = {}
    for question, answer in (values or {}).items():
        flat[question] = answer.get("value") if isinstance(answer, dict) else answer
    return flat


def loopline_record(metadata: dict[str, Any] | None) -> Record | None:
    """The Loopline record the publisher stored with an Argilla record, if it is there and valid."""
    try:
        return record_from_metadata(metadata)
    except KeyError:
        return None
    except ValidationError as exc:
        log.warning("metadata %s is not a valid Loopline record: %s", RECORD_METADATA_KEY, exc)
        return None


def loopline_record_id(external_id: str | None, metadata: dict[str, Any] | None) -> str | None:
    """The Loopline record id of an Argilla record: its external id (the publisher sets it)."""
    if external_id:
        return external_id
    record = loopline_record(metadata)
    return record.record_id if record is not None else None


def annotator_response(
    record_id: str,
    dataset: str,
    annotator: str,
    status: str,
    values: dict[str, Any] | None,
    updated_at: datetime,
) -> AnnotatorResponse | None:
    """The event for one response; None (logged) for a status Loopline does not know."""
    try:
        known = ResponseStatus(status)
    except ValueError:
        log.warning(
            "response of %s to %s has unknown status %r: skipped", annotator, record_id, status
        )
        return None
    return AnnotatorResponse(
        record_id=record_id,
        dataset=dataset,
        annotator=annotator,
        status=known,
        values=flatten_values(values),
        responded_at=as_utc(updated_at),
    )


def completed_record(
    record: ArgillaRecord,
    dataset: str,
    username: Callable[[str], str],
) -> CompletedRecord | None:
    """A completed Argilla record as a `CompletedRecord` with every response it has.

    None (logged) when the Loopline record cannot be rebuilt from the metadata.
    """
    rebuilt = loopline_record(record.metadata)
    if rebuilt is None:
        log.warning(
            "record %s in %s is completed but has no valid %s metadata: no CompletedRecord",
            record.external_id or record.id,
            dataset,
            RECORD_METADATA_KEY,
        )
        return None
    responses = [
        event
        for response in record.responses
        if (
            event := annotator_response(
                rebuilt.record_id,
                dataset,
                username(response.user_id),
                response.status,
                response.values,
                response.updated_at,
            )
        )
        is not None
    ]
    newest = max((r.responded_at for r in responses), default=record.updated_at)
    return CompletedRecord(
        record=rebuilt, dataset=dataset, responses=responses, completed_at=newest
    )


@dataclass(frozen=True)
class WatchedDatasets:
    """The Argilla datasets the flows publish to: (workspace, dataset name) pairs.

    A dataset counts under its own name and its versions `<name>-v<N>` (what the publisher
    creates with `on_settings_change: new_version`). In split mode the datasets live in the
    annotators' workspaces `<workspace>-<annotator>`.
    """

    targets: frozenset[tuple[str, str]]
    flows: tuple[tuple[str, str], ...] = ()  # (dataset name, the flow publishing to it)

    @classmethod
    def from_flows(cls, flows: FlowsConfig, default_workspace: str) -> WatchedDatasets:
        targets: set[tuple[str, str]] = set()
        names: dict[str, str] = {}
        for flow_name, flow in flows.flows.items():
            publish = flow.publish
            if publish is None:
                continue
            name = publish.dataset or flow_name
            names.setdefault(name, flow_name)
            workspace = publish.workspace or default_workspace
            if publish.mode == "split":
                targets.update((f"{workspace}-{a}", name) for a in publish.annotators)
            else:
                targets.add((workspace, name))
        return cls(frozenset(targets), tuple(sorted(names.items())))

    def flow_of(self, dataset: str) -> str:
        """The flow that publishes to `dataset` (or a version of it); "unknown" if none."""
        names = dict(self.flows)
        base = re.fullmatch(r"(.+)-v\d+", dataset)
        found = names.get(dataset) or (names.get(base.group(1)) if base else None)
        return found or "unknown"

    def matches(self, workspace: str, dataset: str) -> bool:
        if (workspace, dataset) in self.targets:
            return True
        base = re.fullmatch(r"(.+)-v\d+", dataset)
        return base is not None and (workspace, base.group(1)) in self.targets

    def select(self, datasets: Iterable[ArgillaDataset]) -> list[ArgillaDataset]:
        return [d for d in datasets if self.matches(d.workspace, d.name)]
