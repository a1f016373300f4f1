"""`loopline demo FLOW`: a shipped flow's sample through the running local stack, end to end.

Imports the flow's sample (each run under fresh record ids), lets bot annotators answer in
Argilla (or waits for people with `--people`), exports when every record is done, and shows
each stage's progress live: ingested, generated, judged, in Argilla, answered, completed,
exported. A stage that stalls is named with its last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

import devstack
from cli.data import import_file, show_results
from cli.http_ingest import HttpIngest
from cli.options import FlowsFile, StateDir, settings_with
from cli.output import console, exit_on, fail
from cli.stack import stack_config
from devstack import services as local_services
from devstack.stage_watch import FlowProgress, StageWatcher
from shared.flows import Flow, FlowFileError, FlowsConfig
from shared.plugins import PluginKind, PluginRegistry
from shared.service import load_checked_flows
from shared.settings import Settings

STALL_AFTER_S = 120.0
EXPORT_EVENT_WAIT_S = 30.0  # for the new versions' datasets.exported events to come back


def demo(
    flow: Annotated[str, typer.Argument(help="A flow with a sample (`loopline check-flows`).")],
    limit: Annotated[int | None, typer.Option(help="Take only the first N sample rows.")] = None,
    people: Annotated[
        bool, typer.Option(help="Wait for real annotators instead of running bots.")
    ] = False,
    annotators: Annotated[int, typer.Option(help="Bot annotators (without --people).")] = 2,
    policy: Annotated[
        str | None,
        typer.Option(help="Bot policy (default: run-tests for code-eval, else agree)."),
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Give up after this long.")] = 1800.0,
    state_dir: StateDir = None,
    flows_file: FlowsFile = None,
) -> None:
    """Run a shipped flow's sample through the running local stack and watch the loop close.

    Needs `make up` (the local stack and the six services). For demos only: the bots are
    simulated annotators, real Argilla users answering through Argilla's API as the UI does.
    """
    config = stack_config(state_dir)
    settings = settings_with(flows_file=flows_file, stack_dir=state_dir)
    # Talk to the local stack exactly as the services `make up` started do.
    os.environ.update(local_services.service_env(config, settings.flows_file))
    settings = Settings()
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with exit_on(KeyError, code=2):
        chosen = flows.get(flow)
    if chosen.sample is None:
        raise fail(f"flow {flow!r} ships no sample (`sample:` in its flow file)")
    down = [
        s.name for s in [*devstack.status(config), *local_services.status(config)] if not s.healthy
    ]
    if down:
        raise fail(f"not running: {', '.join(down)}; start everything with `make up`", code=1)
    sample = demo_sample(Path(chosen.sample.path), settings.stack_dir / "demo", flow, limit)
    bot_policy = policy or ("run-tests" if flow == "code-eval" else "agree")
    progress = asyncio.run(
        run_demo(settings, flows, flow, sample, people, annotators, bot_policy, timeout_s)
    )
    summarise(progress, config.argilla_url)


def demo_sample(source: Path, folder: Path, flow: str, limit: int | None) -> Path:
    """The sample's first `limit` rows under fresh record ids (so every run is a new run)."""
    run = uuid.uuid4().hex[:8]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{flow}-{run}.jsonl"
    with source.open() as rows, target.open("w") as out:
        for number, line in enumerate(rows):
            if limit is not None and number >= limit:
                break
            row = json.loads(line)
            row["demo_record_id"] = f"{flow}-{run}-{number:03d}"
            out.write(json.dumps(row) + "\n")
    return target


async def run_demo(
    settings: Settings,
    flows: FlowsConfig,
    flow_name: str,
    sample: Path,
    people: bool,
    annotators: int,
    policy: str,
    timeout_s: float,
    policy_options: Mapping[str, Any] | None = None,
) -> FlowProgress:
    """The sample through the running services; bots answer with `policy`, built from
    `policy_options` (the policy's defaults without them)."""
    flow = flows.get(flow_name)
    with sample.open() as rows:
        record_ids = {json.loads(row)["demo_record_id"] for row in rows}
    watcher = StageWatcher(settings.kafka, flow_name, flow, record_ids)
    await watcher.start()
    ingester = HttpIngest.for_flow(settings.ingest, flow_name)
    try:
        assert flow.sample is not None
        via: HttpIngest | None = ingester
        if await ingester.ready():
            console.print(f"sending the sample through the ingester at {ingester.base_url}")
        else:
            via = None
            console.print(f"no ingester at {ingester.base_url}: importing the sample directly")
        summary = await import_file(
            settings,
            flows,
            sample,
            flow_name,
            preset=flow.sample.preset,
            map_=list(flow.sample.map),
            extra_map=["demo_record_id=record_id"],
            via=via,
        )
        expected = summary.ingested
        console.print(
            f"imported {expected} record(s) of {sample.name} into {flow_name} "
            f"(rejected {summary.rejected}, not routed {summary.unrouted})"
        )
        for reason in summary.reasons:
            console.print(f"  rejected {reason}")
        if expected == 0:
            raise fail(f"no record of the sample reached flow {flow_name!r}", code=1)
        bots: asyncio.Task[Any] | None = None
        if flow.publish is not None and not people:
            bots = asyncio.create_task(
                run_bots(settings, flows, flow_name, annotators, policy, timeout_s, policy_options)
            )
        elif flow.publish is not None:
            console.print(
                f"waiting for people to answer in Argilla at {settings.argilla.api_url} "
                f"(`loopline annotators add --flow {flow_name} NAME` creates their logins)"
            )
        await watch(watcher.progress, flow, expected, timeout_s)
        if bots is not None:
            bots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bots
        announced = await export(settings, flows, flow_name)
        await seen_exported(watcher.progress, announced, EXPORT_EVENT_WAIT_S)
        return watcher.progress
    finally:
        await ingester.aclose()
        await watcher.stop()


async def run_bots(
    settings: Settings,
    flows: FlowsConfig,
    flow_name: str,
    annotators: int,
    policy: str,
    timeout_s: float,
    policy_options: Mapping[str, Any] | None = None,
) -> None:
    """Bot annotators answer the flow's records as they arrive in Argilla (until cancelled)."""
    from devstack.annotators.runner import RunOptions, annotate_flow

    options = dict(policy_options or {})
    bot_policy = PluginRegistry().build(PluginKind.annotators, policy, options)
    await annotate_flow(
        settings.argilla,
        flow_name,
        flows.get(flow_name),
        bot_policy,
        bots=annotators,
        options=RunOptions(idle_timeout_s=timeout_s),
    )


async def watch(progress: FlowProgress, flow: Flow, expected: int, timeout_s: float) -> None:
    """Show the stages live until every record is done (or the time is up): a table on a
    terminal, else one line whenever a count changes (for logs and CI)."""
    deadline = time.monotonic() + timeout_s
    if console.is_terminal:
        with Live(
            progress_table(progress, expected), console=console, refresh_per_second=2
        ) as live:
            while len(progress.finished()) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                live.update(progress_table(progress, expected))
            live.update(progress_table(progress, expected))
    else:
        last = ""
        while True:
            line = progress_line(progress, expected)
            if line != last:
                console.print(line, soft_wrap=True)
                last = line
            if len(progress.finished()) >= expected or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
    if len(progress.finished()) < expected:
        console.print(f"[yellow]time is up:[/yellow] {len(progress.finished())}/{expected} done")


def progress_table(progress: FlowProgress, expected: int) -> Table:
    table = Table("stage", "records", "failed", "state", title=f"flow {progress.flow_name}")
    stalled = progress.stalled(STALL_AFTER_S)
    for name, counted in progress.stages.items():
        state = ""
        if name == stalled:
            error = progress.last_error(name)
            state = f"[red]stalled[/red]{f': {error}' if error else ''}"
        elif len(counted.records) + len(counted.failed) >= expected:
            state = "[green]done[/green]"
        table.add_row(name, f"{len(counted.records)}/{expected}", str(len(counted.failed)), state)
    if progress.auto_accepted:
        table.add_row("auto-accepted", str(len(progress.auto_accepted)), "", "")
    exported = ", ".join(f"{f} v{v} ({rows} rows)" for f, (v, rows) in progress.exported.items())
    table.add_row("exported", exported or "-", "", "")
    return table


async def export(settings: Settings, flows: FlowsConfig, flow_name: str) -> dict[str, int]:
    """A new version of each of the flow's formats, now (as `loopline export`); the versions
    announced on `datasets.exported`, by format."""
    from services.exporter.on_demand import announce, catch_up, export_now

    await catch_up(settings, flows, flow_name)
    refs = list(flows.get(flow_name).export.formats)
    results = await asyncio.to_thread(export_now, settings, flows, flow_name, refs)
    await announce(settings, flows, results)
    show_results(flow_name, results)
    return {result.format: result.version for result in results if result.created}


async def seen_exported(progress: FlowProgress, versions: dict[str, int], wait_s: float) -> None:
    """Until the watcher has read the announcement of each of `versions` (or `wait_s`)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        seen = {fmt: version for fmt, (version, _) in progress.exported.items()}
        if all(seen.get(fmt, 0) >= version for fmt, version in versions.items()):
            return
        await asyncio.sleep(0.2)


def progress_line(progress: FlowProgress, expected: int) -> str:
    """The stages' counts on one line, the stalled stage named with its last error."""
    parts = [
        f"{name} {len(counted.records)}/{expected}" for name, counted in progress.stages.items()
    ]
    failed = sum(len(counted.failed) for counted in progress.stages.values())
    if progress.auto_accepted:
        parts.append(f"auto-accepted {len(progress.auto_accepted)}")
    if failed:
        parts.append(f"failed {failed}")
    stalled = progress.stalled(STALL_AFTER_S)
    if stalled is not None:
        error = progress.last_error(stalled)
        parts.append(f"stalled at {stalled}{f': {error}' if error else ''}")
    return f"{progress.flow_name}: " + ", ".join(parts)


def summarise(progress: FlowProgress, argilla_url: str) -> None:
    for record_id, reason in sorted(progress.failed().items())[:10]:
        console.print(f"  failed {record_id}: {reason}")
    console.print(f"Argilla: {argilla_url}")
    for fmt, path in sorted(progress.export_paths.items()):
        console.print(f"export {fmt}: {path}  (report: {Path(path) / 'report.html'})")
