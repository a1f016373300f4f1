"""`loopline annotate` (bot annotators) and `loopline annotators add|list` (people's accounts).

Both act on Argilla as its owner (`LOOPLINE_ARGILLA__API_URL`, `__API_KEY`): annotator users are
created in the workspaces a flow publishes to, the split workspaces included.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
import yaml

from cli.options import FlowsFile, settings_with
from cli.output import configure_logging, console, err, exit_on, fail
from devstack.annotators.accounts import (
    Account,
    AccountError,
    ensure_account,
    flow_workspaces,
    person_seat,
    workspace_annotators,
)
from devstack.annotators.rest import ArgillaError, ArgillaREST
from devstack.annotators.runner import RunReport, annotate
from shared.flows import Flow, FlowFileError
from shared.plugins import PluginLoadError, PluginOptionsError, UnknownPluginError
from shared.service import load_checked_flows
from shared.settings import Settings

annotators_app = typer.Typer(
    help="Argilla annotator accounts for real people, in a flow's workspaces.",
    no_args_is_help=True,
)
FlowName = Annotated[str, typer.Option("--flow", help="The flow whose records people annotate.")]
PLUGIN_ERRORS = (UnknownPluginError, PluginOptionsError, PluginLoadError)


def _flow(settings: Settings, name: str) -> Flow:
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with exit_on(KeyError, code=2):
        return flows.get(name)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs as plugin options; each value is read as YAML (`0.2`, `true`, `x`)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {pair!r}: expected key=value")
        options[key.strip()] = yaml.safe_load(value)
    return options


def annotate_command(
    flow: FlowName,
    annotators: Annotated[
        int | None,
        typer.Option(
            help="Bots (default: as many as a record needs submissions). A split flow's "
            "records are answered by its own annotators, whatever N."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="Annotator policy plugin: agree, random, run-tests, ...")
    ] = "agree",
    option: Annotated[
        list[str] | None,
        typer.Option(help="A policy option key=value (repeatable), e.g. disagree_rate=0.1."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many answers.")] = None,
    rate_per_s: Annotated[
        float | None, typer.Option(min=0.001, help="At most this many answers per second.")
    ] = None,
    idle_timeout: Annotated[
        float,
        typer.Option(min=0, help="Stop after this many seconds with nothing to answer."),
    ] = 10.0,
    flows_file: FlowsFile = None,
) -> None:
    """Bot annotators answer a flow's pending records in Argilla, until none is left.

    For demos, tests and benchmarks only: the bots are real Argilla annotator users
    (created if missing) answering through Argilla's REST API as the UI does, so their
    answers reach the feedback collector like people's, but a policy makes them up.
    """
    configure_logging("WARNING")
    settings = settings_with(flows_file=flows_file)
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with exit_on(KeyError, code=2):
        flows.get(flow)
    with exit_on(ValueError, code=2):
        options = parse_options(list(option or []))
    last: list[str] = []

    def show(report: RunReport) -> None:
        line = report.line()
        if not last or line != last[-1]:
            last.append(line)
            err.print(f"[dim]·[/dim] {line}")

    try:
        report = annotate(
            settings,
            flows,
            flow,
            annotators=annotators,
            policy=policy,
            policy_options=options,
            limit=limit,
            rate_per_s=rate_per_s,
            idle_timeout_s=idle_timeout,
            progress=show,
        )
    except (*PLUGIN_ERRORS, AccountError, ArgillaError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{flow}: {report.line()} in {report.elapsed_s:.1f} s; stopped: {report.stopped}")
    for username, tally in report.tallies.items():
        console.print(
            f"  {username}: submitted {tally.submitted}, discarded {tally.discarded}, "
            f"skipped {tally.skipped}, failed {tally.failed}"
        )
    if report.left_to_people:
        console.print(f"  {report.left_to_people} pending record(s) every bot has answered")
    for error in report.errors:
        err.print(f"[red]failed:[/red] {error}")
    if report.total("failed"):
        raise typer.Exit(1)


@annotators_app.command("add")
def add_command(
    flow: FlowName,
    usernames: Annotated[list[str], typer.Argument(help="Usernames of the people to add.")],
    password: Annotated[
        str | None,
        typer.Option(
            help="Their password (8+ characters; replaces an existing user's). Default: a "
            "random one for each new user."
        ),
    ] = None,
    flows_file: FlowsFile = None,
) -> None:
    """Create Argilla annotator users in a flow's workspace (or their split workspaces) and
    print their logins."""
    settings = settings_with(flows_file=flows_file)
    chosen = _flow(settings, flow)
    with exit_on(AccountError, code=2):
        places = [person_seat(flow, chosen, settings.argilla.workspace, u) for u in usernames]

    async def add_all() -> list[Account]:
        async with _owner(settings) as owner:
            return [
                await ensure_account(owner, seat.username, seat.workspace, password)
                for seat in places
            ]

    try:
        accounts = asyncio.run(add_all())
    except (AccountError, ArgillaError) as exc:
        raise fail(str(exc)) from None
    console.print(f"Argilla: {settings.argilla.api_url}")
    for account in accounts:
        secret = account.password or "(unchanged: an existing user)"
        state = "created" if account.created else "existing"
        console.print(
            f"  {account.username}  password: {secret}  workspace: {account.workspace}  ({state})"
        )


@annotators_app.command("list")
def list_command(flow: FlowName, flows_file: FlowsFile = None) -> None:
    """The annotators of a flow's workspace(s), with the Argilla URL they log in at."""
    settings = settings_with(flows_file=flows_file)
    chosen = _flow(settings, flow)
    with exit_on(AccountError, code=2):
        workspaces = flow_workspaces(flow, chosen, settings.argilla.workspace)

    async def list_all() -> dict[str, list[str]]:
        async with _owner(settings) as owner:
            return {ws: await workspace_annotators(owner, ws) for ws in workspaces}

    with exit_on(ArgillaError, code=2):
        found = asyncio.run(list_all())
    console.print(f"Argilla: {settings.argilla.api_url}")
    for workspace, usernames in found.items():
        console.print(f"  workspace {workspace}: {', '.join(usernames) or '(no annotators)'}")


def _owner(settings: Settings) -> ArgillaREST:
    return ArgillaREST(settings.argilla.api_url, settings.argilla.api_key_value())
