"""Annotator accounts: who annotates a flow's records, in which Argilla workspace.

A flow publishes to one dataset in its workspace (`publish.workspace`, default
`LOOPLINE_ARGILLA__WORKSPACE`), where every annotator of the workspace sees every record
(overlap), or, in `split` mode, to one copy of the dataset per annotator named in
`publish.annotators`, in the workspace `<workspace>-<annotator>` (the argilla-publisher's
naming; each record goes to one of them). An annotator joins by being an Argilla user with
the `annotator` role and a member of that workspace; `ensure_account` makes both true,
idempotently, as the owner.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from devstack.annotators.rest import ArgillaREST
from shared.flows import Flow, PublishRef

ANNOTATOR_ROLE = "annotator"
MIN_PASSWORD_CHARS = 8  # Argilla's minimum


class AccountError(ValueError):
    """An account cannot be set up as asked (the message says why)."""


@dataclass(frozen=True)
class Seat:
    """An annotator's place in a flow: who answers which dataset, in which workspace."""

    username: str
    workspace: str
    dataset: str


@dataclass(frozen=True)
class Account:
    """An Argilla annotator user, member of `workspace`; `password` only when it was set now."""

    username: str
    user_id: str
    api_key: str
    workspace: str
    created: bool
    password: str | None = None


def publish_of(flow_name: str, flow: Flow) -> PublishRef:
    if flow.publish is None:
        raise AccountError(
            f"flow {flow_name!r} has no `publish` stage: none of its records go to people"
        )
    return flow.publish


def flow_workspace(flow_name: str, flow: Flow, default_workspace: str) -> str:
    """The workspace a flow publishes to (in split mode, the prefix of the annotators' ones)."""
    return publish_of(flow_name, flow).workspace or default_workspace


def split_workspace(workspace: str, annotator: str) -> str:
    """The workspace of one annotator of a split flow (the argilla-publisher's naming)."""
    return f"{workspace}-{annotator}"


def bot_name(flow_name: str, number: int) -> str:
    """The username of bot annotator `number` (from 1) of a flow."""
    return f"bot-{flow_name}-{number}"


def seats(flow_name: str, flow: Flow, default_workspace: str, bots: int | None) -> list[Seat]:
    """The seats bot annotators take: `bots` bots in the flow's workspace (default: as many
    as a record needs submissions); in split mode, the flow's annotators, each in their own
    workspace, whatever `bots` says (each record goes to one of them and waits for them)."""
    publish = publish_of(flow_name, flow)
    workspace = flow_workspace(flow_name, flow, default_workspace)
    dataset = publish.dataset or flow_name
    if bots is not None and bots < 1:
        raise AccountError("the number of annotators must be at least 1")
    if publish.mode == "split":
        return [
            Seat(name, split_workspace(workspace, name), dataset) for name in publish.annotators
        ]
    count = bots or publish.min_submitted
    return [Seat(bot_name(flow_name, i), workspace, dataset) for i in range(1, count + 1)]


def person_seat(flow_name: str, flow: Flow, default_workspace: str, username: str) -> Seat:
    """Where a person annotating the flow works: the flow's workspace, or their own split one
    (then they must be one of the flow's annotators: the publisher sends records to no one
    else)."""
    publish = publish_of(flow_name, flow)
    workspace = flow_workspace(flow_name, flow, default_workspace)
    dataset = publish.dataset or flow_name
    if publish.mode != "split":
        return Seat(username, workspace, dataset)
    if username not in publish.annotators:
        raise AccountError(
            f"flow {flow_name!r} splits its records over {', '.join(publish.annotators)}; "
            f"{username!r} is not one of them (add it to publish.annotators first)"
        )
    return Seat(username, split_workspace(workspace, username), dataset)


def flow_workspaces(flow_name: str, flow: Flow, default_workspace: str) -> list[str]:
    """Every workspace the flow's records go to."""
    publish = publish_of(flow_name, flow)
    workspace = flow_workspace(flow_name, flow, default_workspace)
    if publish.mode == "split":
        return [split_workspace(workspace, name) for name in publish.annotators]
    return [workspace]


async def ensure_workspace(owner: ArgillaREST, name: str) -> str:
    """The id of workspace `name`, created if missing."""
    found = await owner.workspace(name)
    if found is None:
        found = await owner.create_workspace(name)
    return str(found["id"])


async def ensure_account(
    owner: ArgillaREST, username: str, workspace: str, password: str | None = None
) -> Account:
    """`username` as an annotator in `workspace`, as the owner: the user is created if
    missing (with `password`, else a random one) and added to the workspace if not a member.
    An existing user keeps their password unless `password` is given. A user of another role
    is refused: an owner's or admin's answers would not be an annotator's."""
    if not username.strip():
        raise AccountError("a username cannot be empty")
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    workspace_id = await ensure_workspace(owner, workspace)
    user = await owner.user(username)
    created = user is None
    if user is None:
        password = password or secrets.token_urlsafe(12)
        user = await owner.create_user(username, password, ANNOTATOR_ROLE)
    elif user["role"] != ANNOTATOR_ROLE:
        raise AccountError(
            f"Argilla user {username!r} exists with the role {user['role']!r}, not "
            f"{ANNOTATOR_ROLE!r}; choose another username"
        )
    elif password is not None:
        await owner.set_password(str(user["id"]), password)
    members = await owner.workspace_users(workspace_id)
    if all(str(member["id"]) != str(user["id"]) for member in members):
        await owner.add_to_workspace(workspace_id, str(user["id"]))
    return Account(
        username=username,
        user_id=str(user["id"]),
        api_key=str(user["api_key"]),
        workspace=workspace,
        created=created,
        password=password,
    )


async def workspace_annotators(owner: ArgillaREST, workspace: str) -> list[str]:
    """The usernames of the annotators in `workspace` (none when it does not exist)."""
    found = await owner.workspace(workspace)
    if found is None:
        return []
    members = await owner.workspace_users(str(found["id"]))
    return sorted(m["username"] for m in members if m["role"] == ANNOTATOR_ROLE)


LOCAL_PASSWORD = "loopline-annotator"  # the local stack's annotators (never in production)


async def ensure_split_annotators(
    owner: ArgillaREST, flows: dict[str, Flow], default_workspace: str
) -> list[Account]:
    """The annotators every `split` flow names, as accounts in their own workspaces.

    The argilla-publisher refuses to start while a split flow's annotators do not exist (it
    never creates people's accounts); the local stack creates them before it starts the
    services, with the password `LOCAL_PASSWORD`.
    """
    accounts = []
    for name, flow in flows.items():
        if flow.publish is None or flow.publish.mode != "split":
            continue
        for annotator in flow.publish.annotators:
            seat = person_seat(name, flow, default_workspace, annotator)
            new = await owner.user(seat.username) is None
            password = LOCAL_PASSWORD if new else None  # an existing user keeps theirs
            accounts.append(await ensure_account(owner, seat.username, seat.workspace, password))
    return accounts
