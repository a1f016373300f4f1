"""Where a flow's records land in Argilla: workspaces, datasets and, in split mode, annotators.

Everything is created idempotently from the flow file at start-up, before anything is consumed;
an Argilla that does not answer yet is waited for (`sdk_call`: its trouble is transient). An
existing dataset whose settings differ from the template's either stops the service with the
difference spelled out, or (with `on_settings_change: new_version`) the flow publishes to
`<name>-v2`, `-v3`, ...
A flow with `publish.when` adds the `review_reason` metadata property to its template's
settings (`routing.py`), so adding `when` to a flow changes its datasets' settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import argilla as rg
from argilla._exceptions import ArgillaAPIError

from services.argilla_publisher.dataset_settings import settings_diff
from services.argilla_publisher.routing import review_settings
from shared.failures import PermanentError, TransientError
from shared.flows import PublishRef, ReviewWhen
from shared.hashing import stable_fraction
from shared.templates import Template

T = TypeVar("T")
log = logging.getLogger("loopline.argilla_publisher")
MAX_VERSIONS = 50
SPLIT_SALT = "argilla-publisher split"  # apart from other uses of the record id's hash


class SettingsDriftError(RuntimeError):
    """An existing Argilla dataset does not match the flow's template."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per dataset
class Target:
    """One Argilla dataset that records are published to."""

    dataset: Any  # rg.Dataset
    workspace: str
    annotator: str | None = None

    @property
    def name(self) -> str:
        return str(self.dataset.name)


async def sdk_call(step: Callable[[], T]) -> T:
    """`step`, synchronous calls of Argilla's SDK, in a thread, with Argilla's answers told
    apart for the retry policy (`shared.failures`): unavailable, busy, timing out, or not taking
    the key yet (5xx, 429, 408, 401, 403) is transient; any other refusal is permanent. Not
    reaching Argilla at all is httpx's connection error, transient as it is."""
    try:
        return await asyncio.to_thread(step)
    except ArgillaAPIError as exc:
        status = exc.status_code
        if status in (401, 403, 408, 429) or status >= 500:
            raise TransientError(str(exc)) from exc
        raise PermanentError(str(exc)) from exc


def ensure_workspace(client: rg.Argilla, name: str) -> Any:
    workspace = client.workspaces(name)
    if workspace is None:
        workspace = rg.Workspace(name=name, client=client).create()
        log.info("created Argilla workspace %s", name)
    return workspace


def ensure_member(client: rg.Argilla, username: str, workspace: Any) -> None:
    user = client.users(username)
    if user is None:
        raise RuntimeError(
            f"Argilla user {username!r} (an annotator of a split flow) does not exist; "
            "create it first"
        )
    if all(member.username != username for member in workspace.users):
        user.add_to_workspace(workspace)
        log.info("added %s to workspace %s", username, workspace.name)


def ensure_dataset(
    client: rg.Argilla, name: str, workspace: str, settings: rg.Settings, policy: str
) -> Any:
    """The dataset `name` (or its newest matching version) with exactly `settings`."""
    for version in range(1, MAX_VERSIONS + 1):
        candidate = name if version == 1 else f"{name}-v{version}"
        existing = client.datasets(candidate, workspace=workspace)
        if existing is None:
            dataset = rg.Dataset(
                name=candidate, workspace=workspace, settings=settings, client=client
            ).create()
            log.info("created Argilla dataset %s/%s", workspace, candidate)
            return dataset
        differences = settings_diff(existing.settings, settings)
        if not differences:
            return existing
        if policy != "new_version":
            raise SettingsDriftError(
                f"Argilla dataset {workspace}/{candidate} exists with other settings than the "
                f"template: {'; '.join(differences)}. Update the flow, delete the dataset, or "
                "set `on_settings_change: new_version`"
            )
        log.warning(
            "dataset %s/%s differs (%s); trying the next version",
            workspace,
            candidate,
            "; ".join(differences),
        )
    raise SettingsDriftError(f"no free version of dataset {name} in {workspace}")


@dataclass(frozen=True)
class Publication:
    """A flow's template and targets: one dataset (overlap) or one per annotator (split)."""

    flow: str
    template: Template
    targets: tuple[Target, ...]
    when: ReviewWhen | None = None  # which judged records people see (None: all)

    def target_for(self, record_id: str) -> Target:
        """Where the record goes: the one dataset (overlap), or its annotator's (split)."""
        return self.targets[split_index(record_id, len(self.targets))]


def split_index(record_id: str, annotators: int) -> int:
    """Split mode's annotator for a record: a function of its id alone (a stable hash), so a
    redelivered or re-emitted record goes to the same annotator wherever it is read from, and
    shares are balanced on average (not exactly: each record falls on its own)."""
    return min(int(stable_fraction(SPLIT_SALT, record_id) * annotators), annotators - 1)


def prepare(
    client: rg.Argilla, flow: str, ref: PublishRef, template: Template, default_workspace: str
) -> Publication:
    name = ref.dataset or flow
    workspace = ref.workspace or default_workspace
    settings = review_settings(template.settings(ref.min_submitted), ref)
    if ref.mode == "overlap":
        ensure_workspace(client, workspace)
        dataset = ensure_dataset(client, name, workspace, settings, ref.on_settings_change)
        return Publication(flow, template, (Target(dataset, workspace),), ref.when)
    targets = []
    for annotator in ref.annotators:
        own = f"{workspace}-{annotator}"
        ensure_member(client, annotator, ensure_workspace(client, own))
        # Each annotator's copy needs one submission: the record is theirs alone.
        own_settings = review_settings(template.settings(1), ref)
        dataset = ensure_dataset(client, name, own, own_settings, ref.on_settings_change)
        targets.append(Target(dataset, own, annotator))
    return Publication(flow, template, tuple(targets), ref.when)
