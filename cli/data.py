"""`loopline ingest` and `loopline export`: files into a flow, a flow's datasets out, on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.options import FlowsFile, StateDir, settings_with
from cli.output import configure_logging, console, exit_on, fail, progress_bar
from shared.broker import build_broker, ensure_topics
from shared.flows import Flow, FlowFileError, FlowsConfig
from shared.service import load_checked_flows
from shared.settings import Settings

if TYPE_CHECKING:  # the services load when a command needs them, not for `--help`
    from services.exporter.export import ExportResult
    from services.ingester.batch_import import ImportSummary, Ingests
    from services.ingester.sources.mapping import Mapping


def ingest(
    path: Annotated[Path, typer.Argument(help="JSONL, CSV, Parquet file or save_to_disk folder.")],
    flow: Annotated[str, typer.Option(help="Flow the records go into.")],
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="column=field (repeatable), e.g. question=instruction."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Column mapping preset: dolly, orca_dpo, alpaca, dpo, prompt_completion, "
            "messages, sharegpt. Default: detected from the columns."
        ),
    ] = None,
    source_format: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv, parquet or datasets (detected).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of a DatasetDict (default all).")] = None,
    batch_size: Annotated[int, typer.Option(help="Records per publish batch.")] = 500,
    flows_file: FlowsFile = None,
) -> None:
    """Import a file or dataset into a flow, through the ingester's pipeline, onto Kafka.

    Fields a column can map to: record_id, instruction, context, system, messages, response,
    chosen, rejected, tags, category, metadata.<name>. Bad rows are reported with their line or
    row number and do not stop the others.
    """
    configure_logging("WARNING")
    settings = settings_with(flows_file=flows_file)
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    if flow not in flows.flows:
        raise fail(f"unknown flow {flow!r}; defined: {', '.join(flows.flows)}")
    summary = asyncio.run(
        import_file(
            settings, flows, path, flow, preset, list(map_ or []), source_format, split, batch_size
        )
    )
    console.print(
        f"{path}: {summary.rows} rows → ingested {summary.ingested} "
        f"({summary.unrouted} not routed), duplicates {summary.duplicates}, "
        f"rejected {summary.rejected}"
    )
    for reason in summary.reasons:
        console.print(f"  rejected {reason}")
    if summary.rejected > len(summary.reasons):
        console.print(f"  ... and {summary.rejected - len(summary.reasons)} more")


async def import_file(
    settings: Settings,
    flows: FlowsConfig,
    path: Path,
    flow: str,
    preset: str | None = None,
    map_: list[str] | None = None,
    source_format: str | None = None,
    split: str | None = None,
    batch_size: int = 500,
    extra_map: list[str] | None = None,
    via: Ingests | None = None,
) -> ImportSummary:
    """Import `path` into `flow` through the ingester's pipeline (or `via` the running
    ingester's HTTP API), with a progress bar.

    `extra_map` adds column=field pairs to the preset's (or the detected preset's) mapping.
    """
    from services.ingester.app import SERVICE as INGESTER
    from services.ingester.pipeline import BrokerPublisher, IngestPipeline
    from services.ingester.sources.mapping import Mapping
    from services.ingester.sources.readers import SourceError, count_rows, detect_format

    with exit_on(SourceError, code=2):
        fmt = source_format or detect_format(path)
        total = count_rows(path, fmt, split)

    def mapping_for(columns: list[str]) -> Mapping:
        return Mapping.from_options(preset, [*(map_ or []), *(extra_map or [])], columns)

    if via is not None:
        return await _import_rows_through(
            via, path, fmt, flow, total, mapping_for, split, batch_size
        )
    broker, _ = build_broker(settings, "ingest-cli")
    await ensure_topics(settings.kafka, INGESTER.produces)
    await broker.start()
    try:
        pipeline = IngestPipeline(
            flows,
            BrokerPublisher(broker, settings.kafka),
            default_flow=flow,
            max_message_bytes=settings.kafka.max_message_bytes,
            max_depth=settings.ingest.max_depth,
        )
        return await _import_rows_through(
            pipeline, path, fmt, flow, total, mapping_for, split, batch_size
        )
    finally:
        await broker.stop()


async def _import_rows_through(
    pipeline: Ingests,
    path: Path,
    fmt: str,
    flow: str,
    total: int | None,
    mapping_for: Callable[[list[str]], Mapping],
    split: str | None,
    batch_size: int,
) -> ImportSummary:
    """`import_rows` through `pipeline`, with a progress bar."""
    from services.ingester.batch_import import import_rows

    with progress_bar() as bar:
        task = bar.add_task(f"ingesting {path.name}", total=total)
        with exit_on(ValueError, code=2):
            return await import_rows(
                path,
                fmt,
                flow,
                pipeline,
                mapping_for,
                split,
                batch_size,
                advance=lambda n: bar.advance(task, n),
            )


def why_not_accepted(flow: Flow) -> str:
    """Why a flow's judged records may not be accepted (yet), for `loopline export`."""
    if flow.publish is not None:
        who = "the records publish.when sends to people" if flow.publish.when else "records"
        return f"{who} wait on records.judged until people answer them in Argilla"
    return "their judgments failed, or did not pass the flow's export.auto_accept rule"


def export_command(
    flow: Annotated[str, typer.Option(help="The flow to export.")],
    format_: Annotated[
        list[str] | None,
        typer.Option("--format", help="A format of the flow (repeatable; default: all of them)."),
    ] = None,
    from_start: Annotated[
        bool, typer.Option(help="Re-read the topics from their start (replay), not from the store.")
    ] = False,
    flows_file: FlowsFile = None,
    state_dir: StateDir = None,
) -> None:
    """Write a new version of a flow's datasets now.

    Catches the flow's record store up with records.completed and records.judged (whether or
    not the exporter service runs), then writes one version per format under
    LOOPLINE_EXPORT__DIR (default <state dir>/exports): <flow>/<format>/v<N>/ with manifest.json
    and report.html, the Parquet shards it changed in <flow>/<format>/shards/, and the format's
    card README.md (load_dataset(<flow>/<format>, "v<N>")). A format whose data did not change
    since its latest version gets no new version.
    """
    from services.exporter.export import store_path
    from services.exporter.on_demand import announce, catch_up, export_now
    from services.exporter.record_pass import warm_up, workers_for
    from services.exporter.store import ExportStore

    configure_logging("WARNING")
    settings = settings_with(flows_file=flows_file, stack_dir=state_dir)
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with exit_on(KeyError, code=2):
        chosen = flows.get(flow)
    available = [ref.plugin for ref in chosen.export.formats]
    if not available:
        raise fail(f"flow {flow!r} has no `export` formats in its flow file")
    unknown = sorted(set(format_ or []) - set(available))
    if unknown:
        raise fail(
            f"flow {flow!r} does not export {', '.join(unknown)}; "
            f"its formats: {', '.join(available)}"
        )
    refs = [ref for ref in chosen.export.formats if not format_ or ref.plugin in format_]

    with ExportStore(store_path(settings, flow)) as store:
        stored = store.count()
    # A replay, or a store already large, will want the export's worker processes: they get
    # ready while the topics are read.
    if workers_for(settings.export, stored) > 1 or (from_start and settings.export.workers > 1):
        warm_up()
    with progress_bar() as bar:
        task = bar.add_task("reading the topics", total=None)
        with exit_on(TimeoutError, code=1):
            caught = asyncio.run(
                catch_up(settings, flows, flow, from_start, lambda n: bar.advance(task, n))
            )
    console.print(
        f"read {caught.read} message(s): {caught.kept + caught.not_accepted} for {flow} "
        f"({caught.kept} accepted, {caught.not_accepted} not accepted), "
        f"{caught.other_flows} for other flows; {caught.changed} changed"
    )
    if caught.not_accepted:
        console.print(f"  not accepted: {why_not_accepted(chosen)}")
    for problem in caught.invalid[:10]:
        console.print(f"  skipped invalid message {problem}")
    with ExportStore(store_path(settings, flow)) as store:
        records = store.count()
    with progress_bar() as bar:
        task = bar.add_task(f"exporting {', '.join(r.plugin for r in refs)}", total=records)
        results = export_now(settings, flows, flow, refs, partial(bar.advance, task))
    show_results(flow, results)
    asyncio.run(announce(settings, flows, results))


def show_results(flow: str, results: list[ExportResult]) -> None:
    """One line per format: its new version, or why there is none."""
    for result in results:
        rows = ", ".join(f"{split} {n}" for split, n in result.rows.items())
        if result.created:
            console.print(
                f"{flow}/{result.format}: v{result.version} ({rows} rows) → {result.path}"
            )
        elif not any(result.rows.values()):
            console.print(f"{flow}/{result.format}: no rows, no version written")
        else:
            console.print(
                f"{flow}/{result.format}: unchanged since v{result.version} ({rows} rows)"
            )
