"""The `loopline` command: run a service, manage the local stack, inspect plugins and flows."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from shared import local_services, stack
from shared.broker import build_broker, ensure_topics
from shared.flows import FlowFileError, FlowsConfig
from shared.plugins import PluginKind, PluginRegistry
from shared.service import ServiceSpec, load_checked_flows, run_service
from shared.settings import Settings

SERVICES: dict[str, str] = {
    "ingester": "services.ingester.app",
    "generator": "services.generator.app",
    "judge": "services.judge.app",
    "argilla-publisher": "services.argilla_publisher.app",
    "feedback-collector": "services.feedback_collector.app",
    "exporter": "services.exporter.app",
}

app = typer.Typer(
    help="Loopline: stream LLM traffic into curated training and evaluation data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The local stack: Kafka (Tansu), Argilla (+ search, Redis, worker), llama.cpp LLM.",
    no_args_is_help=True,
)
services_app = typer.Typer(
    help="The six services as background processes against the local stack.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(services_app, name="services")
console = Console()
err = Console(stderr=True)

StateDir = Annotated[
    Path | None,
    typer.Option(help="State directory (default LOOPLINE_STACK_DIR or .loopline)."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Model the LLM serves: 1.5b (default) or 0.5b. Remembered by `up`."),
]
KafkaModeOption = Annotated[
    str | None,
    typer.Option(help="durable (default; survives restarts) or memory. Remembered by `up`."),
]


STACK_OPTIONS_FILE = "stack-options.json"
DEFAULT_OPTIONS = {"model": "1.5b", "kafka_mode": "durable"}


def stack_config(
    state_dir: Path | None, model: str | None = None, kafka_mode: str | None = None
) -> stack.StackConfig:
    """The stack's config: options given now, else those `stack up` saved, else the defaults."""
    state_dir = state_dir or Settings().stack_dir
    saved_file = state_dir / STACK_OPTIONS_FILE
    saved = json.loads(saved_file.read_text()) if saved_file.is_file() else {}
    options = {**DEFAULT_OPTIONS, **saved}
    options.update({k: v for k, v in (("model", model), ("kafka_mode", kafka_mode)) if v})
    if options["model"] not in ("0.5b", "1.5b"):
        raise typer.BadParameter(f"--model must be 0.5b or 1.5b, not {options['model']!r}")
    if options["kafka_mode"] not in ("durable", "memory"):
        raise typer.BadParameter(
            f"--kafka-mode must be durable or memory, not {options['kafka_mode']!r}"
        )
    return stack.StackConfig(state_dir=state_dir, **options)


def save_options(config: stack.StackConfig) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    options = {"model": config.model, "kafka_mode": config.kafka_mode}
    (config.state_dir / STACK_OPTIONS_FILE).write_text(json.dumps(options))


def show(statuses: list[stack.ComponentStatus]) -> bool:
    table = Table("part", "state", "url", "pid", "detail")
    for s in statuses:
        state = "[green]healthy[/green]" if s.healthy else "[red]down[/red]"
        table.add_row(s.name, state, s.url, str(s.pid or "-"), s.detail)
    console.print(table)
    return all(s.healthy for s in statuses)


def progress(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}")


@stack_app.command("install")
def stack_install(state_dir: StateDir = None, model: ModelOption = None) -> None:
    """Download and install the servers and the model weights (idempotent)."""
    with exit_on(stack.StackError, code=1):
        stack.install(stack_config(state_dir, model), progress=progress)


@stack_app.command("up")
def stack_up(
    state_dir: StateDir = None, model: ModelOption = None, kafka_mode: KafkaModeOption = None
) -> None:
    """Install if needed, then start every part that is not already running healthy."""
    config = stack_config(state_dir, model, kafka_mode)
    with exit_on(stack.StackError, code=1):
        statuses = stack.up(config, progress=progress)
    save_options(config)
    show(statuses)
    console.print(
        f"Kafka bootstrap: {config.kafka_bootstrap}\n"
        f"Argilla: {config.argilla_url}  user {config.argilla_username} / password "
        f"{config.argilla_password.get_secret_value()}  api key "
        f"{config.argilla_api_key.get_secret_value()}\n"
        f"LLM: {config.llm_base_url}  model {config.llm_model_name}"
    )


@stack_app.command("down")
def stack_down(state_dir: StateDir = None) -> None:
    """Stop every part by the pid in its pid file."""
    stopped = stack.down(stack_config(state_dir))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(state_dir: StateDir = None, model: ModelOption = None) -> None:
    """Show each part: healthy or not, URL, pid. Exit 1 if any part is down."""
    if not show(stack.status(stack_config(state_dir, model))):
        raise typer.Exit(1)


@services_app.command("up")
def services_up(
    state_dir: StateDir = None,
    model: ModelOption = None,
    flows_file: Annotated[Path, typer.Option(help="Flow file the services use.")] = Path(
        "flows.yaml"
    ),
) -> None:
    """Start the six services in the background, pointed at the local stack."""
    config = stack_config(state_dir, model)
    with exit_on(stack.StackError, code=1):
        show(local_services.up(config, flows_file, progress=progress))
    console.print(f"logs: {config.log_dir}/service-*.log")


@services_app.command("down")
def services_down(state_dir: StateDir = None) -> None:
    """Stop the six services (SIGTERM: they drain in-flight work first)."""
    stopped = local_services.down(stack_config(state_dir))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status(state_dir: StateDir = None) -> None:
    """Show each service: healthy or not, health URL, pid. Exit 1 if any is down."""
    if not show(local_services.status(stack_config(state_dir))):
        raise typer.Exit(1)


@contextmanager
def exit_on(error: type[Exception], code: int) -> Iterator[None]:
    """Turn `error` into a one-line message on stderr and exit status `code`."""
    try:
        yield
    except error as exc:
        # A KeyError's str() is its repr, quotes included: show the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print(f"[red]error:[/red] {message}")
        raise typer.Exit(code) from None


def load_service(name: str) -> ServiceSpec:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of: {', '.join(SERVICES)}")
    spec: ServiceSpec = importlib.import_module(SERVICES[name]).SERVICE
    return spec


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    health_port: Annotated[
        int | None, typer.Option(help="Serve GET /healthz on this port (127.0.0.1).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Run one service until SIGTERM, against the broker in LOOPLINE_KAFKA__BOOTSTRAP_SERVERS."""
    configure_logging(log_level)
    spec = load_service(service)
    settings = Settings()
    if health_port is not None:
        settings = settings.model_copy(update={"health_port": health_port})
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(run_service(spec, settings, flows=flows))


def event_loop_factory() -> Any:
    """uvloop's event loop where it is installed (faster I/O), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@app.command()
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
) -> None:
    """Import a file or dataset into a flow, through the ingester's pipeline, onto Kafka.

    Fields a column can map to: record_id, instruction, context, system, messages, response,
    chosen, rejected, tags, category, metadata.<name>. Bad rows are reported with their line or
    row number and do not stop the others.
    """
    from services.ingester.batch_import import import_rows
    from services.ingester.sources import Mapping, SourceError, count_rows, detect_format

    configure_logging("WARNING")
    settings = Settings()
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    if flow not in flows.flows:
        err.print(f"[red]error:[/red] unknown flow {flow!r}; defined: {', '.join(flows.flows)}")
        raise typer.Exit(2)
    with exit_on(SourceError, code=2):
        fmt = source_format or detect_format(path)
        total = count_rows(path, fmt, split)

    def mapping_for(columns: list[str]) -> Mapping:
        return Mapping.from_options(preset, list(map_ or []), columns)

    summary = asyncio.run(
        _import(
            settings, flows, path, fmt, flow, mapping_for, split, batch_size, total, import_rows
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


async def _import(
    settings: Settings,
    flows: FlowsConfig,
    path: Path,
    fmt: str,
    flow: str,
    mapping_for: Any,
    split: str | None,
    batch_size: int,
    total: int | None,
    import_rows: Any,
) -> Any:
    from services.ingester.app import SERVICE as INGESTER
    from services.ingester.pipeline import BrokerPublisher, IngestPipeline

    broker, _ = build_broker(settings, "ingest-cli")
    await ensure_topics(settings.kafka, INGESTER.produces)
    await broker.start()
    try:
        pipeline = IngestPipeline(flows, BrokerPublisher(broker), default_flow=flow)
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
    finally:
        await broker.stop()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


@app.command("export")
def export_command(
    flow: Annotated[str, typer.Option(help="The flow to export.")],
    format_: Annotated[
        list[str] | None,
        typer.Option("--format", help="A format of the flow (repeatable; default: all of them)."),
    ] = None,
    from_start: Annotated[
        bool, typer.Option(help="Re-read the topics from their start (replay), not from the store.")
    ] = False,
) -> None:
    """Write a new version of a flow's datasets now.

    Catches the flow's record store up with records.completed and records.judged (whether or
    not the exporter service runs), then writes one version per format under
    LOOPLINE_EXPORT__DIR (default .loopline/exports): <flow>/<format>/v<N>/ with Parquet and
    Arrow data, manifest.json and report.html. A format whose data did not change since its
    latest version gets no new version.
    """
    from services.exporter.export import store_path
    from services.exporter.on_demand import announce, catch_up, export_now
    from services.exporter.record_pass import warm_up, workers_for
    from services.exporter.store import ExportStore

    configure_logging("WARNING")
    settings = Settings()
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    with exit_on(KeyError, code=2):
        chosen = flows.get(flow)
    available = [ref.plugin for ref in chosen.export.formats]
    if not available:
        err.print(f"[red]error:[/red] flow {flow!r} has no `export` formats in its flow file")
        raise typer.Exit(2)
    unknown = sorted(set(format_ or []) - set(available))
    if unknown:
        err.print(
            f"[red]error:[/red] flow {flow!r} does not export {', '.join(unknown)}; "
            f"its formats: {', '.join(available)}"
        )
        raise typer.Exit(2)
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
        f"read {caught.read} message(s): {caught.kept} for {flow}, {caught.changed} changed"
    )
    for problem in caught.invalid[:10]:
        console.print(f"  skipped invalid message {problem}")
    with ExportStore(store_path(settings, flow)) as store:
        records = store.count()
    with progress_bar() as bar:
        task = bar.add_task(f"exporting {', '.join(r.plugin for r in refs)}", total=records)
        results = export_now(settings, flows, flow, refs, partial(bar.advance, task))
    for result in results:
        rows = ", ".join(f"{split} {n}" for split, n in result.rows.items())
        if result.created:
            console.print(
                f"{flow}/{result.format}: v{result.version} ({rows} rows) → {result.path}"
            )
        else:
            console.print(
                f"{flow}/{result.format}: unchanged since v{result.version} ({rows} rows)"
            )
    asyncio.run(announce(settings, flows, results))


@app.command()
def plugins() -> None:
    """List the installed plugins of every kind (entry-point groups loopline.*)."""
    registry = PluginRegistry()
    table = Table("kind", "entry-point group", "plugins")
    for kind in PluginKind:
        table.add_row(kind.value, kind.group, ", ".join(registry.names(kind)) or "-")
    console.print(table)


@app.command("check-flows")
def check_flows(
    path: Annotated[
        Path | None, typer.Argument(help="Flow file (default LOOPLINE_FLOWS_FILE).")
    ] = None,
) -> None:
    """Validate a flow file and the plugins it names."""
    settings = Settings()
    if path is not None:
        settings = settings.model_copy(update={"flows_file": path})
    with exit_on(FlowFileError, code=2):
        flows = load_checked_flows(settings)
    console.print(f"{settings.flows_file}: {len(flows.flows)} flow(s) OK: {', '.join(flows.flows)}")
